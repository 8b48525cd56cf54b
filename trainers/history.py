"""History: one record per epoch, readable by column, saved as JSON or CSV."""
import csv
import io
import json
import math

from cynn.serialization import atomic_write

#: Columns every record has, in this order (values may be None: no validation data,
#: no accuracy for a regressor).
COLUMNS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds")


class History:
    """Per-epoch training records.

    ``history[i]`` is the record (a dict) of the i-th epoch; ``history["val_loss"]``
    is that column as a list; ``len(history)`` is the number of epochs.

    Examples
    --------
    >>> h = History()
    >>> h.append({"epoch": 1, "train_loss": 0.5})
    >>> h["train_loss"]
    [0.5]
    """

    def __init__(self, records=None):
        self.records = []
        for record in records or ():
            self.append(record)

    def append(self, record):
        """Add one epoch's record (missing standard columns are filled with None)."""
        full = {key: None for key in COLUMNS}
        full.update(record)
        self.records.append(full)

    @property
    def columns(self):
        names = list(COLUMNS)
        for record in self.records:
            names += [k for k in record if k not in names]
        return names

    def __len__(self):
        return len(self.records)

    def __iter__(self):
        return iter(self.records)

    def __getitem__(self, key):
        if isinstance(key, str):
            if self.records and key not in self.columns:
                raise KeyError(f"no column {key!r} in history; columns are {self.columns}")
            return [record.get(key) for record in self.records]
        return self.records[key]

    def best(self, monitor="val_loss", mode="min"):
        """The record with the lowest (``mode='min'``) or highest monitored value."""
        scored = [r for r in self.records if _is_number(r.get(monitor))]
        if not scored:
            return None
        pick = min if mode == "min" else max
        return pick(scored, key=lambda r: r[monitor])

    def __repr__(self):
        return f"History({len(self)} epochs, columns={self.columns})"

    # -- files --------------------------------------------------------------
    def to_json(self, path):
        """Write the records as a JSON list, atomically."""
        text = json.dumps(self.records, indent=1, allow_nan=True)
        atomic_write(path, lambda f: f.write(text.encode()))

    @classmethod
    def from_json(cls, path):
        with open(path) as f:
            data = json.load(f)
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise ValueError(f"{path} does not hold a list of epoch records")
        return cls(data)

    def to_csv(self, path):
        """Write the records as CSV (header from `columns`), atomically."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns)
        writer.writeheader()
        for record in self.records:
            writer.writerow({k: ("" if v is None else v) for k, v in record.items()})
        atomic_write(path, lambda f: f.write(buf.getvalue().encode()))

    @classmethod
    def from_csv(cls, path):
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        return cls([{k: _parse(v) for k, v in row.items()} for row in rows])


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def _parse(text):
    if text == "":
        return None
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text
