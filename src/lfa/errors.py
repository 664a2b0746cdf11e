"""Every error a user can cause derives from :class:`LfaError`; its message names the file, key or cause and
what to do. The ``lfa`` command, the workflow's scripts and the Snakefile catch this base and print that one
line (no traceback); anything else is a bug of the package and keeps its traceback.

A subclass exists only where a caller must tell it apart (a rerun that resumes, a state set aside, a name to
suggest). Each also derives from the built-in exception it refines, so ``except ValueError`` keeps working.
"""

from __future__ import annotations


class LfaError(Exception):
    """An error the user can fix: bad config, missing or damaged files, data that changed, a plugin's bug."""


# --- the configuration and what it names -------------------------------------------------------------------
class ConfigError(LfaError, ValueError):
    """A configuration that cannot run; the message names the offending key."""


class UnknownNameError(ConfigError, KeyError):
    """A name that no entry of a registry has (both a ``KeyError`` and a ``ValueError``)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class DuplicateNameError(ConfigError):
    """A name registered a second time; the message names both places."""


class PluginError(ConfigError):
    """A plugin that cannot be used: missing, failing to import, or registering a name twice."""


class LossCheckError(ConfigError):
    """A loss whose terms cannot train: wrong shape, not finite, or with a gradient that is zero everywhere."""


# --- files ---------------------------------------------------------------------------------------------------
class MissingFile(LfaError, FileNotFoundError):
    """A file the step reads is not there; the message names it and what makes it."""


class UnreadableFile(LfaError, ValueError):
    """A file that is there but cannot be read as what it should be; the message names it and what to do."""


class UnreadableCheckpoint(LfaError, RuntimeError):
    """A checkpoint file that cannot be read (truncated, empty, not a torch file); the message names it."""


class CheckpointMismatch(LfaError, RuntimeError):
    """A checkpoint that belongs to another configuration (classes, backbone, job)."""


# --- raw data and downloads ----------------------------------------------------------------------------------
class RawDataMissing(LfaError, FileNotFoundError):
    """The raw data is absent or not in the expected layout; the message says where to get it and put it."""


class RawDataInvalid(LfaError, ValueError):
    """The raw data is there but fails a check (checksum, published file counts, label consistency)."""


class CorruptImageError(RawDataInvalid):
    """An image file could not be decoded; the message names the file."""


class DownloadError(LfaError, RuntimeError):
    """A download or an extraction failed; the message says whether a rerun resumes or restarts."""


class ChecksumError(DownloadError):
    """A downloaded file's checksum differs from the known one (the file has been deleted)."""


class UnsafeArchiveError(DownloadError):
    """An archive member would be written outside the extraction folder."""


# --- results bound to their data and config ------------------------------------------------------------------
class PredictionsMismatch(LfaError, ValueError):
    """Predictions that do not belong to the prepared dataset they are evaluated against; names file and field."""


class MixedResults(LfaError, ValueError):
    """Aggregated results written under another configuration than the one the report is rendered for."""


class DivergenceError(LfaError, RuntimeError):
    """The training loss became NaN or inf."""
