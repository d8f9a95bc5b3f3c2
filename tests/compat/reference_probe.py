"""Makes one request with the official client SDK 18.12.3 and reports it as one JSON line.

Run by the reference client's own Python (``.venv-reference-client/bin/python``), never
imported by the test suite: the SDK pins an aiohttp that must not meet the project's.
The SDK signs every request itself; this script only picks the call and, for the
stale-date case, shifts the clock the SDK reads, so the signature stays genuine and only
the date is wrong.

Usage (the endpoint and keys come from BACKEND_* variables, as for the ``backend.ai`` CLI):

    reference_probe.py hello
    reference_probe.py request METHOD PATH [--date-offset SECONDS]
    reference_probe.py create-session LANG

Report: ``{"status": int, "body": ...}`` on a 2xx answer, ``{"status": int, "reason": str,
"problem": ...}`` when the SDK raised BackendAPIError (``problem`` is the parsed body the
SDK carries).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import Any

from ai.backend.client import request as sdk_request
from ai.backend.client.exceptions import BackendAPIError
from ai.backend.client.request import Request
from ai.backend.client.session import Session


def shift_sdk_clock(offset_seconds: float) -> None:
    """Make the SDK date (and sign) its requests `offset_seconds` away from now.

    Request.fetch() stamps ``datetime.now(tzutc())`` through the name ``datetime`` of the
    SDK's request module; replacing that name is the narrowest possible patch.
    """
    offset = dt.timedelta(seconds=offset_seconds)

    class ShiftedDatetime(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> dt.datetime:  # type: ignore[override]
            return dt.datetime.now(tz) + offset

    sdk_request.datetime = ShiftedDatetime


def call(args: argparse.Namespace) -> dict[str, Any]:
    with Session() as session:
        try:
            if args.command == "hello":
                return {"status": 200, "body": session.Kernel.hello()}
            if args.command == "create-session":
                kernel = session.Kernel.get_or_create(args.lang, client_token="compat-probe")
                body = {
                    "kernelId": kernel.kernel_id,
                    "created": kernel.created,
                    "servicePorts": kernel.service_ports,
                }
                return {"status": 201, "body": body}
            with Request(session, args.method, args.path).fetch() as resp:
                return {"status": resp.status, "body": resp.json()}
        except BackendAPIError as exc:
            return {"status": exc.status, "reason": exc.reason, "problem": exc.data}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("hello", help="Kernel.hello(): the signed GET / version probe")
    req = sub.add_parser("request", help="one signed request with no body")
    req.add_argument("method")
    req.add_argument("path")
    req.add_argument("--date-offset", type=float, default=0.0, help="seconds to shift Date")
    create = sub.add_parser("create-session", help="Kernel.get_or_create(LANG)")
    create.add_argument("lang")
    args = parser.parse_args()
    if getattr(args, "date_offset", 0.0):
        shift_sdk_clock(args.date_offset)
    print(json.dumps(call(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
