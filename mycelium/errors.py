"""One exception hierarchy. Messages are written for the person running the command."""


class MyceliumError(Exception):
    """Base of every error Mycelium raises on purpose."""


class ConfigError(MyceliumError):
    """Bad command-line input or configuration; the CLI exits with code 2."""


class IdentityError(MyceliumError):
    """The identity key cannot be read or written."""


class BootstrapError(MyceliumError):
    """No bootstrap peer could be reached."""


class InvalidMessage(MyceliumError):
    """Bytes from the network that fail decoding, signature, size, expiry or schema checks."""


class TransferError(MyceliumError):
    """A model transfer failed (peer gone, hash mismatch, too large, timed out)."""


class JoinRefused(MyceliumError):
    """A group did not admit us; the message says why. `final`: asking again will not help (full,
    refused, wrong model, invite problems), as opposed to a member that could not be reached;
    `full`: the group had no room."""

    def __init__(self, message: str, final: bool = False, full: bool = False) -> None:
        super().__init__(message)
        self.final = final or full
        self.full = full


def leaf_exceptions(error: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, or the exception itself."""
    leaves: list[BaseException] = []
    pending = [error]
    while pending:
        current = pending.pop()
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        else:
            leaves.append(current)
    return leaves
