"""A blind mean-opinion-score (MOS) study of SR images, in the browser, as in the SRGAN paper.

Two commands:

    python mos.py serve --images results/images [--db results/mos.sqlite] [--host 127.0.0.1]
                        [--port 8000] [--anchors nearest,hr] [--set data/Set5]
    python mos.py report --db results/mos.sqlite --out results/mos

``serve`` turns every ``<image>_<method>.png`` of ``--images`` (the files
``super_resolution.ipynb`` writes) into the study's items, each with an opaque random id and the
SHA-256 of its content, and serves a rating page: every rater (a random token in a cookie) sees
all items once, in their own random order, one at a time at true size, and scores each 1 (bad)
.. 5 (excellent) by a button or the keys 1-5. Nothing on the page, in a URL or in a header names
the method. Each rating is committed to SQLite (WAL mode) when it is given, so a killed server
loses nothing and a restart on the same ``--db`` continues the same study; a rater who comes back
in the same browser continues where they stopped. A rater is stored with their first rating (a
visit alone stores nothing). The nearest-neighbour upscale and the HR image are calibration
anchors (``--anchors``): taken from the folder when there (``<image>_nearest.png``,
``<image>_hr.png``), otherwise made from the HR test set given by ``--set``.

An item whose file is deleted or changed is *retired* (on ``serve``'s start, and as soon as the
page fails to load it): it is no longer shown, its ratings are kept and reported apart, and a
changed file is a new item. ``--db`` must be a database of this tool (or a new file): any other
SQLite file is refused before anything is written to it. Only requests addressed to the served
host names are answered (no DNS rebinding).

``report`` reads the database only and writes the MOS per method (overall and per image) with
a 95% confidence interval and the numbers of raters and ratings, a Wilcoxon signed-rank test on
per-rater means between each pair of methods rated by at least
``mos_stats.MIN_RATERS_FOR_TESTS`` raters (see ``mos_stats.pairwise_tests``), and the retired
items, as Markdown and CSV, and a figure; all files are replaced together or not at all.

This file is the command line: the two subcommands, their arguments, and ``serve``'s checks of
its port and address and its console lines. The study itself: ``mos_db.py`` (the SQLite store
and the items), ``mos_images.py`` (the image files and the anchors), ``mos_app.py`` (the rating
page and its web app), ``mos_stats.py`` (the statistics) and ``mos_report.py`` (the report
files).
"""
import argparse
import ipaddress
import socket
import sys

import cli
from mos_app import (DEFAULT_HOST, DEFAULT_PORT, PROG, WILDCARD_HOSTS, create_app,
                     local_addresses)
from mos_db import RETIRED_CHANGED, RETIRED_MISSING, check_db, open_db, sync_items
from mos_images import DEFAULT_ANCHORS, parse_anchors, study_files
from mos_report import write_report

DEFAULT_DB = "results/mos.sqlite"


# ----------------------------------------------------------------------------------------------
# serve
# ----------------------------------------------------------------------------------------------

def port_number(text):
    """``"8000"`` -> 8000; anything but an integer 1..65535 -> ValueError naming ``--port``."""
    try:
        port = int(text)
    except ValueError:
        port = None
    if port is None or not 1 <= port <= 65535:
        raise ValueError(f"--port {text!r}: use an integer from 1 to 65535")
    return port


def check_listen(host, port):
    """Raise OSError (one line) when ``host:port`` cannot be listened on (port in use, no such
    address, privileged port); werkzeug would print several lines and exit instead."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        socket.create_server((host, port), family=family).close()
    except OSError as e:
        raise OSError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None

def reach_note(host, port):
    """Who can reach a server bound to ``host``: one line for the console."""
    try:
        loopback = ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        loopback = False
    if loopback:
        return f"only this machine can reach the study: http://{host}:{port}/"
    addresses = local_addresses() if host in WILDCARD_HOSTS else [host]
    urls = ", ".join(f"http://{a}:{port}/" for a in addresses) or f"http://{host}:{port}/"
    return (f"WARNING: every machine that can reach {host} on port {port} can open the study "
            f"and rate ({urls}); use --host {DEFAULT_HOST} for this machine only")


def _count(con, table, where=""):
    return con.execute(f"SELECT COUNT(*) FROM {table} {where}").fetchone()[0]


def serve(args):
    """``mos.py serve``: prepare the study in ``--db`` and serve it until Ctrl-C."""
    from werkzeug.serving import make_server

    port = port_number(args.port)
    anchors = parse_anchors(args.anchors)
    check_db(args.db)                  # another application's file: refused, left as it was
    files, notes = study_files(args.images, anchors, args.set)
    check_listen(args.host, port)
    for note in notes:
        print(f"{PROG}: warning: {note}", file=sys.stderr)
    con = open_db(args.db)
    try:
        counts = sync_items(con, files)
        items, retired, raters, ratings = (
            _count(con, "items", "WHERE retired IS NULL"),
            _count(con, "items", "WHERE retired IS NOT NULL"),
            _count(con, "raters"), _count(con, "ratings"))
    finally:
        con.close()
    images = len({i for i, _ in files})
    print(f"study {args.db}: {items} items ({images} images x {len({m for _, m in files})} "
          f"methods here, {counts['added'] + counts['restored']} new), {raters} raters, "
          f"{ratings} ratings so far")
    if counts[RETIRED_MISSING] or counts[RETIRED_CHANGED]:
        print(f"{PROG}: note: retired {counts[RETIRED_MISSING]} items whose file is gone and "
              f"{counts[RETIRED_CHANGED]} whose file changed (a changed file is a new item); "
              f"their ratings are kept and reported apart", file=sys.stderr)
    if retired:
        print(f"{retired} retired items in all (not shown to raters)")
    server = make_server(args.host, port, create_app(args.db, args.host, port), threaded=True)
    print(reach_note(args.host, port))
    print("Ctrl-C stops the server; every rating is already saved")
    sys.stdout.flush()
    try:
        server.serve_forever()
    finally:
        server.server_close()


# ----------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------

def report(args):
    """``mos.py report``: the tables and the figure."""
    for path in write_report(args.db, args.out):
        print(path)


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------

def parser():
    """The argument parser of ``mos.py``."""
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="serve the rating page")
    s.add_argument("--images", required=True, help="folder of <image>_<method>.png")
    s.add_argument("--db", default=DEFAULT_DB, help=f"study database (default {DEFAULT_DB})")
    s.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST}:"
                                                        " this machine only)")
    s.add_argument("--port", default=str(DEFAULT_PORT), help=f"default {DEFAULT_PORT}")
    s.add_argument("--anchors", default=DEFAULT_ANCHORS,
                   help=f"calibration anchors to include (default {DEFAULT_ANCHORS}; '' for none)")
    s.add_argument("--set", default=None,
                   help="HR test set folder (<image>.png ...): makes missing anchors")
    r = sub.add_parser("report", help="MOS tables and figure from the database")
    r.add_argument("--db", default=DEFAULT_DB, help=f"study database (default {DEFAULT_DB})")
    r.add_argument("--out", default="results/mos", help="output folder (default results/mos)")
    return p


def main(argv=None):
    """Entry point: parse ``argv`` and run the subcommand; expected errors are one line."""
    args = parser().parse_args(argv)
    try:
        return (serve if args.command == "serve" else report)(args)
    except (OSError, ValueError) as e:
        return cli.fail(PROG, e)


if __name__ == "__main__":
    sys.exit(cli.run(PROG, main))
