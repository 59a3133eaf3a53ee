"""``Column``: a column expression, with PySpark's operators (``==``, ``&``, ``~``, ``+``, ...)
and methods (``alias``, ``cast``, ``isNull``, ...)."""

from ember import _ember
from ember.pyspark.errors import PySparkTypeError, PySparkValueError

_LITERALS = (bool, int, float, str, type(None))


def _lit(value):
    if isinstance(value, Column):
        return value._jc
    if not isinstance(value, _LITERALS):
        raise PySparkTypeError(
            "[NOT_COLUMN_OR_LITERAL] Argument `col` should be a Column or a literal (None, bool, int, float, str), got %s."
            % type(value).__name__
        )
    return _ember.sql_lit(value)


def _to_column(value, argument="col"):
    """A column argument as PySpark reads one: a ``Column``, or a column's name."""
    if isinstance(value, Column):
        return value._jc
    if isinstance(value, str):
        return _ember.sql_col(value)
    raise PySparkTypeError(
        "[NOT_COLUMN_OR_STR] Argument `%s` should be a Column or str, got %s." % (argument, type(value).__name__)
    )


class Column:
    """A column expression. Made by ``col``, ``lit``, ``df.name``, ``df["name"]`` and the
    functions of ``pyspark.sql.functions``; evaluated when a query runs."""

    def __init__(self, jc):
        self._jc = jc

    def __repr__(self):
        return repr(self._jc)

    def _binary(self, op, other):
        return Column(self._jc.binary(op, _lit(other)))

    def _reflected(self, op, other):
        return Column(_lit(other).binary(op, self._jc))

    def __eq__(self, other):
        return self._binary("=", other)

    def __ne__(self, other):
        return self._binary("!=", other)

    def __lt__(self, other):
        return self._binary("<", other)

    def __le__(self, other):
        return self._binary("<=", other)

    def __gt__(self, other):
        return self._binary(">", other)

    def __ge__(self, other):
        return self._binary(">=", other)

    def __and__(self, other):
        return self._binary("AND", other)

    def __or__(self, other):
        return self._binary("OR", other)

    def __rand__(self, other):
        return self._reflected("AND", other)

    def __ror__(self, other):
        return self._reflected("OR", other)

    def __invert__(self):
        return Column(self._jc.unary("NOT"))

    def __neg__(self):
        return Column(self._jc.unary("-"))

    def __add__(self, other):
        return self._binary("+", other)

    def __sub__(self, other):
        return self._binary("-", other)

    def __mul__(self, other):
        return self._binary("*", other)

    def __truediv__(self, other):
        return self._binary("/", other)

    def __mod__(self, other):
        return self._binary("%", other)

    def __radd__(self, other):
        return self._reflected("+", other)

    def __rsub__(self, other):
        return self._reflected("-", other)

    def __rmul__(self, other):
        return self._reflected("*", other)

    def __rtruediv__(self, other):
        return self._reflected("/", other)

    def __rmod__(self, other):
        return self._reflected("%", other)

    def __bool__(self):
        raise ValueError(
            "Cannot convert column into bool: please use '&' for 'and', '|' for 'or', "
            "'~' for 'not' when building DataFrame boolean expressions."
        )

    __hash__ = None

    def __iter__(self):
        raise TypeError("Column is not iterable")

    def alias(self, *alias, **kwargs):
        """The column under another name."""
        if len(alias) != 1:
            raise PySparkValueError("ember's alias takes one name, got %d" % len(alias))
        return Column(self._jc.alias(alias[0]))

    name = alias

    def cast(self, dataType):
        """The column as another type (``"int"``, ``"string"``, ``"double"``, ...; a value that
        does not convert becomes null, as in Spark without ANSI mode)."""
        if not isinstance(dataType, str):
            dataType = getattr(dataType, "simpleString", lambda: str(dataType))()
        return Column(self._jc.cast(dataType))

    astype = cast

    def when(self, condition, value):
        """Another branch of a ``when(...)`` column."""
        if not isinstance(condition, Column):
            raise PySparkTypeError("[NOT_COLUMN] Argument `condition` should be a Column, got %s." % type(condition).__name__)
        return Column(self._jc.when(condition._jc, _lit(value)))

    def otherwise(self, value):
        """The value where no branch of a ``when(...)`` column holds."""
        return Column(self._jc.otherwise(_lit(value)))

    def getItem(self, key):
        """The element at 0-based position ``key`` of an array column (null past its end)."""
        if isinstance(key, bool) or not isinstance(key, int):
            raise PySparkValueError("ember's getItem takes an array position (an int), got %s" % type(key).__name__)
        return Column(self._jc.get_item(key))

    def getField(self, name):
        """The field ``name`` of a struct column (such as ``from_json``'s)."""
        if not isinstance(name, str):
            raise PySparkValueError("getField takes a field's name, got %s" % type(name).__name__)
        return Column(self._jc.get_field(name))

    def __getitem__(self, key):
        if isinstance(key, slice):
            raise PySparkValueError("[NOT_IMPLEMENTED] ember's Column takes no slices; use getItem")
        if isinstance(key, str):
            return self.getField(key)
        return self.getItem(key)

    def isNull(self):
        return Column(self._jc.unary("IS NULL"))

    def isNotNull(self):
        return Column(self._jc.unary("IS NOT NULL"))

