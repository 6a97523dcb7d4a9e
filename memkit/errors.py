"""Domain exceptions. The library raises these; only the CLI turns them into exit codes."""


class MemkitError(Exception):
    "Base class for every error memkit reports to a user as one line."


class NotABank(MemkitError):
    "The directory holds no memkit bank (run `memkit init` first)."


class ConfigError(MemkitError):
    "memkit.yaml is not valid."


class UnknownFormat(MemkitError):
    "No reader recognises this file."


class InputNotFound(MemkitError):
    "A path given to ingest matches no file."


class PlaybookNotFound(MemkitError):
    "No playbook of that name (or version) exists in this bank."


class ItemNotFound(MemkitError):
    "No item of that id exists in the playbook."


class PlaybookInvalid(MemkitError):
    "A playbook file does not match the playbook schema."


class UnsafePath(MemkitError):
    "A name or path would escape the project directory."


class ExportError(MemkitError):
    "The context file could not be rendered or written."


class BankLocked(MemkitError):
    "Another memkit process holds the bank's write lock."


class BadPlaybookRef(MemkitError):
    "A playbook reference is not of the form NAME@VERSION."


class ReadOnlyBank(MemkitError):
    "The bank was opened read-only (memkit.open's default) and the call would change it."


class CannotWrite(MemkitError):
    "A file or folder memkit was asked to create or write is not writable there (a folder, a file, no permission)."


class IngestFailed(MemkitError):
    """The ingest could not finish for a reason of its own (its parsing process died)."""
