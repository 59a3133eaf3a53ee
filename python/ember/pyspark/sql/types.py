"""``Row``: a row of a DataFrame, as PySpark gives it (a tuple whose fields have names); and
PySpark's schema types (``StructType``, ``StructField``, ``StringType``, ...) for the schemas
ember takes (``readStream.schema``, ``from_json``, ``applyInPandasWithState``), which reach
ember as Spark's DDL text."""


class Row(tuple):
    """A row: ``Row(word='a', count=2)``; ``row.word``, ``row["word"]``, ``row[0]`` and
    ``row.asDict()`` read it. ``Row("a", "b")`` makes a row class with those field names."""

    def __new__(cls, *args, **kwargs):
        if args and kwargs:
            raise ValueError("Can not use both args and kwargs to create Row")
        if kwargs:
            row = tuple.__new__(cls, list(kwargs.values()))
            row.__fields__ = list(kwargs.keys())
            return row
        return tuple.__new__(cls, args)

    @classmethod
    def _make(cls, fields, values):
        row = tuple.__new__(cls, values)
        row.__fields__ = list(fields)
        return row

    def asDict(self, recursive=False):
        if not hasattr(self, "__fields__"):
            raise TypeError("Cannot convert a Row class into dict")
        if not recursive:
            return dict(zip(self.__fields__, self))

        def convert(value):
            if isinstance(value, Row):
                return value.asDict(True)
            if isinstance(value, list):
                return [convert(v) for v in value]
            if isinstance(value, dict):
                return {k: convert(v) for k, v in value.items()}
            return value

        return {k: convert(v) for k, v in zip(self.__fields__, self)}

    def __contains__(self, item):
        if hasattr(self, "__fields__"):
            return item in self.__fields__
        return super().__contains__(item)

    def __call__(self, *args):
        """A row of this row class: ``Person = Row("name", "age"); Person("a", 1)``."""
        if len(args) > len(self):
            raise ValueError("Can not create Row with fields %s, expected %d values but got %s" % (self, len(self), args))
        return Row._make(list(self), args)

    def __getitem__(self, item):
        if isinstance(item, (int, slice)):
            return super().__getitem__(item)
        try:
            return super().__getitem__(self.__fields__.index(item))
        except (AttributeError, ValueError):
            raise ValueError(item) from None

    def __getattr__(self, item):
        if item.startswith("__"):
            raise AttributeError(item)
        try:
            return self[self.__fields__.index(item)]
        except (AttributeError, ValueError):
            raise AttributeError(item) from None

    def __setattr__(self, key, value):
        if key != "__fields__":
            raise RuntimeError("Row is read-only")
        self.__dict__[key] = value

    def __reduce__(self):
        if hasattr(self, "__fields__"):
            return (Row._make, (self.__fields__, tuple(self)))
        return tuple.__reduce__(self)

    def __repr__(self):
        if hasattr(self, "__fields__"):
            return "Row(%s)" % ", ".join("%s=%r" % (k, v) for k, v in zip(self.__fields__, tuple(self)))
        return "<Row(%s)>" % ", ".join(repr(field) for field in self)


class DataType:
    """A column's type."""

    _name = None

    def simpleString(self):
        return self._name

    def typeName(self):
        return self._name

    def __eq__(self, other):
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def __hash__(self):
        return hash(self.simpleString())

    def __repr__(self):
        return "%s()" % type(self).__name__


class StringType(DataType):
    _name = "string"


class LongType(DataType):
    _name = "bigint"


class IntegerType(DataType):
    _name = "int"


class ShortType(DataType):
    _name = "smallint"


class ByteType(DataType):
    _name = "tinyint"


class DoubleType(DataType):
    _name = "double"


class FloatType(DataType):
    _name = "float"


class BooleanType(DataType):
    _name = "boolean"


class TimestampType(DataType):
    _name = "timestamp"


class DateType(DataType):
    _name = "date"


class BinaryType(DataType):
    _name = "binary"


class ArrayType(DataType):
    def __init__(self, elementType, containsNull=True):
        self.elementType = elementType
        self.containsNull = containsNull

    def simpleString(self):
        return "array<%s>" % self.elementType.simpleString()

    def __repr__(self):
        return "ArrayType(%r, %r)" % (self.elementType, self.containsNull)


class StructField:
    """A named column of a :class:`StructType`."""

    def __init__(self, name, dataType, nullable=True, metadata=None):
        if not isinstance(name, str):
            raise TypeError("field name %r should be a string" % (name,))
        if not isinstance(dataType, DataType):
            raise TypeError("dataType %r should be an instance of DataType" % (dataType,))
        self.name = name
        self.dataType = dataType
        self.nullable = nullable
        self.metadata = metadata or {}

    def simpleString(self):
        return "%s:%s" % (self.name, self.dataType.simpleString())

    def __eq__(self, other):
        return isinstance(other, StructField) and (self.name, self.dataType, self.nullable) == (
            other.name,
            other.dataType,
            other.nullable,
        )

    def __repr__(self):
        return "StructField(%r, %r, %r)" % (self.name, self.dataType, self.nullable)


class StructType(DataType):
    """A row's schema: ``StructType([StructField("word", StringType()), ...])`` or
    ``StructType().add("word", StringType())``. ember supports its fields of the simple types
    above and arrays of them (no nested structs yet)."""

    def __init__(self, fields=None):
        self.fields = list(fields or [])

    def add(self, field, data_type=None, nullable=True, metadata=None):
        if isinstance(field, StructField):
            self.fields.append(field)
        else:
            if isinstance(data_type, str):
                raise TypeError("ember's StructType.add takes a DataType, not the type's name %r" % data_type)
            self.fields.append(StructField(field, data_type, nullable, metadata))
        return self

    @property
    def names(self):
        return [f.name for f in self.fields]

    def fieldNames(self):
        return self.names

    def simpleString(self):
        return "struct<%s>" % ",".join(f.simpleString() for f in self.fields)

    def __iter__(self):
        return iter(self.fields)

    def __len__(self):
        return len(self.fields)

    def __repr__(self):
        return "StructType([%s])" % ", ".join(repr(f) for f in self.fields)


def _schema_ddl(schema, what):
    """Spark's DDL text of ``schema``: a DDL string as it is, a :class:`StructType` written out
    (backquoted names)."""
    if isinstance(schema, str):
        return schema
    if isinstance(schema, StructType):
        for field in schema.fields:
            if isinstance(field.dataType, StructType):
                raise TypeError("ember's %s takes no nested struct fields yet (%s)" % (what, field.name))
        return ", ".join("`%s` %s" % (f.name, f.dataType.simpleString()) for f in schema.fields)
    raise TypeError("%s takes a StructType or a DDL string, got %s" % (what, type(schema).__name__))
