"""``DataFrame`` and ``GroupedData``: PySpark's operations on a streaming query's plan, and on the
rows a ``foreachBatch`` function or a memory table gives (``collect``, ``show``, ``count``,
``toPandas``)."""

from ember.pyspark.errors import PySparkTypeError, PySparkValueError
from ember.pyspark.sql.column import Column, _to_column
from ember.pyspark.sql.types import Row


def _columns_of(cols):
    """``select("a", "b")``, ``select(["a", "b"])`` and ``select(col("a"), ...)`` alike."""
    if len(cols) == 1 and isinstance(cols[0], (list, tuple)):
        cols = cols[0]
    return [_to_column(c) for c in cols]


class DataFrame:
    """A DataFrame: a query over streams (``isStreaming``) or rows."""

    def __init__(self, jdf, session):
        self._jdf = jdf
        self.sparkSession = session

    def _new(self, jdf):
        return DataFrame(jdf, self.sparkSession)

    def __repr__(self):
        return repr(self._jdf)

    @property
    def columns(self):
        return self._jdf.columns()

    @property
    def dtypes(self):
        return self._jdf.dtypes()

    @property
    def isStreaming(self):
        return self._jdf.is_streaming()

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in self._jdf.columns():
            raise AttributeError("'DataFrame' object has no attribute '%s'" % name)
        return Column(_to_column(name))

    def __getitem__(self, item):
        if isinstance(item, str):
            return Column(_to_column(item))
        if isinstance(item, Column):
            return self.filter(item)
        if isinstance(item, (list, tuple)):
            return self.select(*item)
        if isinstance(item, int):
            return Column(_to_column(self.columns[item]))
        raise PySparkTypeError("DataFrame[...] takes a column name, a Column, a list or an index, got %s" % type(item).__name__)

    def select(self, *cols):
        """The given columns (names, ``Column``s, ``"*"``); one may be ``explode(...)``."""
        if len(cols) == 1 and isinstance(cols[0], str) and cols[0] == "*":
            return self
        return self._new(self._jdf.select(_columns_of(cols)))

    def selectExpr(self, *expr):
        if len(expr) == 1 and isinstance(expr[0], list):
            expr = expr[0]
        return self._new(self._jdf.select_expr(list(expr)))

    def filter(self, condition):
        """Rows where ``condition`` (a boolean ``Column`` or SQL text) holds."""
        if isinstance(condition, str):
            return self._new(self._jdf.filter_sql(condition))
        if isinstance(condition, Column):
            return self._new(self._jdf.filter(condition._jc))
        raise PySparkTypeError(
            "[NOT_COLUMN_OR_STR] Argument `condition` should be a Column or str, got %s." % type(condition).__name__
        )

    where = filter

    def withColumn(self, colName, col):
        if not isinstance(col, Column):
            raise PySparkTypeError("[NOT_COLUMN] Argument `col` should be a Column, got %s." % type(col).__name__)
        return self._new(self._jdf.with_column(colName, col._jc))

    def withColumnRenamed(self, existing, new):
        return self._new(self._jdf.with_column_renamed(existing, new))

    def drop(self, *cols):
        names = []
        for c in cols:
            if not isinstance(c, str):
                raise PySparkTypeError("ember's drop takes column names, got %s" % type(c).__name__)
            names.append(c)
        return self._new(self._jdf.drop(names))

    def union(self, other):
        return self._new(self._jdf.union(other._jdf))

    unionAll = union

    def groupBy(self, *cols):
        return GroupedData(self, _columns_of(cols))

    groupby = groupBy

    def agg(self, *exprs):
        return self.groupBy().agg(*exprs)

    def withWatermark(self, eventTime, delayThreshold):
        """The watermark of this stream: the greatest ``eventTime`` (a timestamp column) seen
        before a micro-batch minus ``delayThreshold`` (``"10 minutes"``). Aggregations keyed by
        that time (``window(eventTime, ...)``) drop rows older than it and, in append and update
        mode, free the windows it has passed (append mode emits them then)."""
        return self._new(self._jdf.with_watermark(eventTime, delayThreshold))

    def join(self, other, on=None, how=None):
        """The rows joined with ``other``'s on the column names ``on`` (a name or a list of
        names): those columns once, then this DataFrame's other columns, then ``other``'s; or
        where the Column ``on`` holds (``expr("a = b AND t2 >= t1")``): all columns of both.
        ``how``: ``inner`` (the default), ``left``/``left_outer``, ``right``, ``full``/``outer``,
        ``left_semi``, ``left_anti``, ``cross``. A stream joins a table (``spark.read``)."""
        if not isinstance(other, DataFrame):
            raise PySparkTypeError("[NOT_DATAFRAME] Argument `other` should be a DataFrame, got %s." % type(other).__name__)
        if isinstance(on, Column):
            # A condition over both sides' columns (two streams join this way).
            return self._new(self._jdf.join_on(other._jdf, on._jc, how or "inner"))
        if on is None:
            names = []
        elif isinstance(on, str):
            names = [on]
        elif isinstance(on, (list, tuple)) and all(isinstance(n, str) for n in on):
            names = list(on)
        else:
            raise PySparkValueError("ember's join takes column names for `on` (a str or a list of str) so far")
        if how is None:
            how = "inner" if names else "cross"
        return self._new(self._jdf.join(other._jdf, names, how))

    def dropDuplicates(self, subset=None):
        """The rows without repeats of the columns ``subset`` (all when None); on a stream the
        first row of a key goes through, its repeats do not."""
        return self._new(self._jdf.drop_duplicates(self._subset(subset)))

    drop_duplicates = dropDuplicates

    def dropDuplicatesWithinWatermark(self, subset=None):
        """As ``dropDuplicates``, a key being kept until the watermark passes its first row's
        event time plus the delay (the stream needs ``withWatermark``)."""
        return self._new(self._jdf.drop_duplicates(self._subset(subset), True))

    @staticmethod
    def _subset(subset):
        if subset is None:
            return None
        if isinstance(subset, str):
            subset = [subset]
        if not isinstance(subset, (list, tuple)) or not all(isinstance(n, str) for n in subset):
            raise PySparkTypeError("[NOT_LIST_OR_TUPLE] Argument `subset` should be a list or tuple, got %s." % type(subset).__name__)
        return list(subset)

    def createOrReplaceTempView(self, name):
        self._jdf.create_or_replace_temp_view(name)

    def explain(self, extended=None, mode=None):
        """Prints the plans: the physical plan, or with ``extended=True`` (or
        ``mode="extended"``) the logical plans too."""
        if isinstance(extended, str):
            mode, extended = extended, None
        extended = bool(extended) or mode == "extended"
        print(self._jdf.explain_string(extended), end="")

    def collect(self):
        """The rows, as ``Row``s (not for a streaming DataFrame)."""
        names = self.columns
        return [Row._make(names, values) for values in self._jdf.collect_tuples()]

    def take(self, num):
        return self.collect()[:num]

    def head(self, n=None):
        rows = self.collect()
        if n is None:
            return rows[0] if rows else None
        return rows[:n]

    def first(self):
        return self.head()

    def count(self):
        return self._jdf.count()

    def isEmpty(self):
        return self.count() == 0

    def show(self, n=20, truncate=True, vertical=False):
        """Prints the first ``n`` rows as Spark's ``show`` does (cells cut to 20 characters, or
        to ``truncate`` when it is a number; ``truncate=False`` does not cut)."""
        if vertical:
            raise NotImplementedError("ember's show has no vertical form yet")
        if isinstance(truncate, bool):
            truncate = 20 if truncate else 0
        print(self._jdf.show_string(int(n), int(truncate)), end="")

    def toArrow(self):
        """The rows as a ``pyarrow.Table`` (needs pyarrow)."""
        import pyarrow

        return pyarrow.ipc.open_stream(self._jdf.arrow_ipc()).read_all()

    def toPandas(self):
        """The rows as a ``pandas.DataFrame`` (needs pandas and pyarrow)."""
        return self.toArrow().to_pandas()

    @property
    def writeStream(self):
        """Starts a streaming query of this DataFrame."""
        from ember.pyspark.sql.streaming import DataStreamWriter

        return DataStreamWriter(self)


class GroupedData:
    """A DataFrame grouped by keys, for ``count`` or ``agg``."""

    def __init__(self, df, keys):
        self._df = df
        self._keys = keys

    def count(self):
        """The rows of each group, in a column named ``count``."""
        return self._df._new(self._df._jdf.group_by(self._keys, []))

    def agg(self, *exprs):
        """Aggregate columns (``count``, ``sum``, ``avg``, ``min``, ``max``), or a dict of
        column name to function name (``{"amount": "sum"}``)."""
        if len(exprs) == 1 and isinstance(exprs[0], dict):
            from ember.pyspark.sql import functions

            columns = []
            for name, function in exprs[0].items():
                make = getattr(functions, "avg" if function == "mean" else function, None)
                if make is None:
                    raise PySparkTypeError("ember has no aggregate function %r" % function)
                columns.append(make(name))
            exprs = columns
        if not exprs:
            raise PySparkTypeError("agg takes at least one aggregate column")
        for e in exprs:
            if not isinstance(e, Column):
                raise PySparkTypeError("[NOT_COLUMN] agg takes Columns, got %s" % type(e).__name__)
        return self._df._new(self._df._jdf.group_by(self._keys, [e._jc for e in exprs]))

    def _simple(self, function, cols):
        from ember.pyspark.sql import functions

        return self.agg(*[getattr(functions, function)(c) for c in cols])

    def sum(self, *cols):
        return self._simple("sum", cols)

    def avg(self, *cols):
        return self._simple("avg", cols)

    mean = avg

    def min(self, *cols):
        return self._simple("min", cols)

    def max(self, *cols):
        return self._simple("max", cols)

    def applyInPandasWithState(self, func, outputStructType, stateStructType, outputMode, timeoutConf):
        """Calls ``func(key, pdfs, state)`` for every group with rows in a micro-batch, and for
        every group whose state timed out (with one empty frame and ``state.hasTimedOut``):
        ``key`` is a tuple of the group's values, ``pdfs`` an iterator of pandas frames of the
        group's rows, ``state`` a :class:`~ember.pyspark.sql.streaming.state.GroupState`; it
        yields pandas frames whose columns, by name, are ``outputStructType``'s (a DDL string
        such as ``"word string, count long"``, or a ``StructType``). ``outputMode`` is ``"append"`` or ``"update"``
        (and must be the query's), ``timeoutConf`` one of ``GroupStateTimeout``'s. States are
        tuples of ``stateStructType``'s values, pickled into the checkpoint."""
        from ember.pyspark.sql.streaming.state import GroupState, GroupStateTimeout

        assert timeoutConf in [
            GroupStateTimeout.NoTimeout,
            GroupStateTimeout.ProcessingTimeTimeout,
            GroupStateTimeout.EventTimeTimeout,
        ]
        from ember.pyspark.sql.types import _schema_ddl

        try:
            outputStructType = _schema_ddl(outputStructType, "applyInPandasWithState's outputStructType")
            stateStructType = _schema_ddl(stateStructType, "applyInPandasWithState's stateStructType")
        except TypeError as e:
            raise PySparkTypeError("[NOT_STR_OR_STRUCT] %s" % e) from None
        if outputMode not in ("append", "update", "complete"):
            from ember.pyspark.errors import IllegalArgumentException

            raise IllegalArgumentException("The output mode of function should be append or update")
        names = _ddl_names(outputStructType)
        invoke = _pandas_state_function(func, names, timeoutConf, GroupState)
        jdf = self._df._jdf.apply_in_pandas_with_state(self._keys, invoke, outputStructType, outputMode, timeoutConf)
        return self._df._new(jdf)


def _ddl_names(ddl):
    """The column names of a DDL schema (``"a string, `b c` long, d array<int>"``): commas
    inside ``<...>`` do not split, backquoted names keep their spaces."""
    names, part, depth, quoted = [], "", 0, False
    for ch in ddl + ",":
        if ch == "`":
            quoted = not quoted
        elif not quoted and ch == "<":
            depth += 1
        elif not quoted and ch == ">":
            depth -= 1
        if ch == "," and depth == 0 and not quoted:
            part = part.strip()
            if part:
                if part.startswith("`"):
                    names.append(part[1 : part.index("`", 1)])
                else:
                    names.append(part.split()[0].rstrip(":"))
            part = ""
        else:
            part += ch
    return names


def _pandas_state_function(func, names, timeout_conf, group_state):
    """The function ember's engine calls per group: Arrow IPC rows in, Arrow IPC frames out, the
    state pickled (see ``apply_in_pandas_with_state`` in the Rust bridge)."""
    import pickle

    import pandas
    import pyarrow

    def frame(ipc):
        table = pyarrow.ipc.open_stream(ipc).read_all()
        pdf = table.to_pandas()
        # PySpark hands timestamps over naive, in the session time zone (UTC in ember).
        for column in pdf.columns:
            if isinstance(pdf[column].dtype, pandas.DatetimeTZDtype):
                pdf[column] = pdf[column].dt.tz_convert("UTC").dt.tz_localize(None)
        return pdf

    def invoke(key, rows, state_bytes, timed_out, watermark_ms, batch_time_ms):
        state = group_state(
            pickle.loads(state_bytes) if state_bytes is not None else None,
            timed_out,
            watermark_ms,
            batch_time_ms,
            timeout_conf,
        )
        outputs = []
        for out in func(key, iter([frame(rows)]), state):
            if not isinstance(out, pandas.DataFrame):
                raise PySparkTypeError(
                    "[UDF_RETURN_TYPE] applyInPandasWithState's function must yield pandas.DataFrame, got %s"
                    % type(out).__name__
                )
            missing = [n for n in names if n not in out.columns]
            if missing:
                raise PySparkValueError(
                    "[RESULT_COLUMNS_MISMATCH_FOR_PANDAS_UDF] Column names of the returned pandas.DataFrame do not "
                    "match specified schema. Missing: %s. Found: %s." % (", ".join(missing), ", ".join(map(str, out.columns)))
                )
            table = pyarrow.Table.from_pandas(out[names], preserve_index=False)
            sink = pyarrow.BufferOutputStream()
            with pyarrow.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            outputs.append(sink.getvalue().to_pybytes())
        value = pickle.dumps(state._value) if state._value is not None else None
        return outputs, value, state._updated, state._removed, state._timeout_ms

    return invoke
