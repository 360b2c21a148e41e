"""The one exception type for mistakes a user can make (flags, configs, paths, files)."""


class L2OError(Exception):
    """A user-facing error whose message is one line: what is wrong and how to fix it.

    The command line prints the message without a traceback and exits with status 2.
    """
