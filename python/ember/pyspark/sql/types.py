"""``Row``: a row of a DataFrame, as PySpark gives it (a tuple whose fields have names)."""


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
