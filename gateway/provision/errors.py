"""Exit codes of ``dirgw app ...`` and the errors that end a command with one of them."""

from __future__ import annotations

__all__ = [
    "EXIT_OK", "EXIT_ERROR", "EXIT_USAGE", "EXIT_PERMISSION_MISSING", "EXIT_CONSENT_MISSING",
    "EXIT_CREDENTIAL", "EXIT_APP_DELETED", "EXIT_UNREACHABLE", "EXIT_ADMIN_ROLE", "EXIT_SIGN_IN",
    "EXIT_NOT_CONFIRMED", "EXIT_NOT_CONFIGURED", "EXIT_PENDING",
    "ProvisionError", "Unreachable", "GraphError",
]

EXIT_OK = 0
EXIT_ERROR = 1
"""Anything else: an unexpected Graph answer, a file that cannot be read or written."""
EXIT_USAGE = 2
"""Bad arguments, unknown source, missing tenant, a source that already has an app."""
EXIT_PERMISSION_MISSING = 3
"""check: the app has application permissions, but not OrgContact.Read.All."""
EXIT_CONSENT_MISSING = 4
"""check: the app has no granted application permission at all (admin consent missing)."""
EXIT_CREDENTIAL = 5
"""check: the secret or certificate is wrong, expired or unreadable."""
EXIT_APP_DELETED = 6
"""check: the application is not in the tenant (deleted)."""
EXIT_UNREACHABLE = 7
"""The tenant cannot be reached: network, TLS, proxy, unknown tenant, Entra/Graph unavailable."""
EXIT_ADMIN_ROLE = 8
"""generate/remove: the signed-in account lacks the directory role or scope needed."""
EXIT_SIGN_IN = 9
"""generate/remove: the device-code sign-in was declined, expired or failed."""
EXIT_NOT_CONFIRMED = 10
"""remove: not confirmed."""
EXIT_NOT_CONFIGURED = 11
"""check/show: the source has no app (no client_id)."""
EXIT_PENDING = 12
"""generate: app created and configured, but access did not work within the wait budget."""


class ProvisionError(Exception):
    """Ends the command with ``exit_code`` after printing ``message``."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class Unreachable(ProvisionError):
    """Entra or Graph could not be reached (or answered 5xx/429 beyond the retries)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_UNREACHABLE)


class GraphError(ProvisionError):
    """Graph answered an error: ``status``, Graph's ``code`` and ``message``."""

    def __init__(self, method: str, path: str, status: int, code: str, message: str,
                 retry_after: float | None = None) -> None:
        super().__init__(f"{method} {path}: {status} {code}: {message}")
        self.method = method
        self.path = path
        self.status = status
        self.code = code
        self.graph_message = message
        self.retry_after = retry_after

    def short(self) -> str:
        return f"{self.status} {self.code}"

    @property
    def replication(self) -> bool:
        """An error Entra gives for objects that exist but have not replicated yet (§10.3)."""
        text = self.graph_message
        return (self.status == 404 and self.code in ("Request_ResourceNotFound", "ResourceNotFound")) or (
            self.status == 400 and ("does not reference a valid application object" in text
                                    or "Not a valid reference update" in text))

    @property
    def transient(self) -> bool:
        return self.status in (429, 500, 502, 503, 504)

    @property
    def denied(self) -> bool:
        return self.status == 403
