"""What every app needs and that knows no app: redacting logs, running blocking work from async code,
the audit trail of staff changes, turn timing and the Permissions-Policy header.

`core` is the bottom layer (docs/architecture.md): it imports no app of this project.
"""
