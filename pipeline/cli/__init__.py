"""The command line (Vietnamese argparse): consolidate, check, templates, history, diff, fetch, send.
"""


def main(argv: list[str] | None = None) -> int:
    """The tonghop command (pipeline.cli.commands.main)."""
    from pipeline.cli.commands import main as run

    return run(argv)
