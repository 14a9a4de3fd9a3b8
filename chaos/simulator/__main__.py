"""`python -m chaos.simulator --admin-port P --dc NAME=PORT[:CAPACITY] --integration NAME=PORT`."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from chaos.simulator.server import ListenError, run_simulator
from chaos.simulator.targets import InvalidTargets, SimTarget, parse_target_spec, validate_targets

EXIT_FAILED = 1
EXIT_USAGE = 2


class _OneLineParser(argparse.ArgumentParser):
    # argparse prints the whole usage block before the error; parents scanning stderr want one line.
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="python -m chaos.simulator",
        description="Serve simulated DCs and integrations, each on its own port, plus an admin API.",
    )
    parser.add_argument("--admin-port", type=int, required=True, help="port of the admin API")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--dc", action="append", default=[], metavar="NAME=PORT[:CAPACITY]", help="a fulfillment center"
    )
    parser.add_argument(
        "--integration", action="append", default=[], metavar="NAME=PORT", help="an integration"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        targets: list[SimTarget] = [parse_target_spec(spec, "dc") for spec in args.dc]
        targets += [parse_target_spec(spec, "integration") for spec in args.integration]
        validate_targets(targets, args.admin_port)
    except InvalidTargets as exc:
        parser.error(str(exc))
    try:
        run_simulator(targets, admin_port=args.admin_port, host=args.host)
    except ListenError as exc:
        print(f"simulator: {exc.strerror}", file=sys.stderr)
        return EXIT_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
