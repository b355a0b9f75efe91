"""Exceptions of the POS stage (the tree is drawn in ``surveysync.pos``)."""


class PosError(Exception):
    """Something went wrong reading the POS database."""


class PosUnavailable(PosError):
    """The POS database could not be reached or the server refused the query; try later."""


class PosMappingError(PosError):
    """The configured mapping does not fit the POS schema; an operator must fix the config."""
