"""Authentication and authorisation errors.

::

    AuthError
    ├── AuthConfigError       an auth section, key, certificate or htpasswd file that cannot be used
    │                         (also a registry.config_values.ConfigError: the server's config refuses it as is)
    ├── BadCredentials        a username/password pair that does not check out
    ├── PasswordTooLong       a password bcrypt cannot hash (over 72 bytes)
    └── InvalidToken          a bearer token that is malformed, expired, for another service, or badly signed
"""

from __future__ import annotations

from registry.config_values import ConfigError


class AuthError(Exception):
    pass


class AuthConfigError(AuthError, ConfigError):
    pass


class BadCredentials(AuthError):
    pass


class PasswordTooLong(AuthError):
    pass


class InvalidToken(AuthError):
    pass
