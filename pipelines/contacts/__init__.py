"""Contacts, usable but invisible: persons' phones and ID numbers sealed at import in a vault under a key of
their own (``vault``), revealed only to a named person with a stated purpose within reviewed scopes, each act
on a hash-chained audit log (``reveal``, ``audit``)."""
