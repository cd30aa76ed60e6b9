"""The parameter file: an ``.npz`` written atomically and read member by member.

A parameter file is what ``np.savez`` writes (a zip of ``.npy`` arrays, readable
by ``np.load``): the arrays by name, and an index of three small arrays,
``__format__`` (`FORMAT`), ``__names__`` (the arrays to load, in network order)
and ``__objects__`` (what each one was saved from, for error messages).

`ParamFile` reads the index first, then the ``.npy`` header (shape and dtype) of
each array the index names, without reading its data, so that the caller can
check them against the network before reading anything else. It reads the data
of an array only when asked, and never reads arrays that the index does not
name, nor unpickles anything.

`atomic_savez` writes a file through a temporary file and a rename; the file
gets the permissions a plain ``open(path, "wb")`` would give it.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import zipfile
from dataclasses import dataclass

import numpy as np
from nengo.exceptions import ValidationError

#: Marks a parameter file (and its layout version).
FORMAT = "nengo_jax.params/2"

#: The index arrays.
INDEX = ("__format__", "__names__", "__objects__")

_FORMAT = np.lib.format


def npz_path(path) -> str:
    """``path`` as a string, with ``.npz`` added if missing (as by ``np.savez``)."""
    path = os.fspath(path)
    return path if path.endswith(".npz") else path + ".npz"


# -- writing ------------------------------------------------------------------------


def atomic_savez(path, arrays):
    """Write ``arrays`` to ``path`` through a temporary file and a rename.

    A new file gets ``0o666 & ~umask``, an overwritten one keeps its mode, as
    when ``np.savez`` writes to the path itself.
    """
    directory = os.path.dirname(os.path.abspath(path))
    mode = os.stat(path).st_mode & 0o7777 if os.path.exists(path) else None
    fd, tmp = _create_temporary(directory, os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _create_temporary(directory, name):
    """A new file ``.<name>.<random>.tmp`` in ``directory``: (descriptor, path).

    Created with mode 0o666, which the operating system reduces by the umask
    (`tempfile.mkstemp` would give 0o600 whatever the umask).
    """
    flags = (
        os.O_WRONLY
        | os.O_CREAT
        | os.O_EXCL
        | getattr(os, "O_BINARY", 0)
        | getattr(os, "O_CLOEXEC", 0)
    )
    for _ in range(100):
        tmp = os.path.join(directory, f".{name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"Cannot create a temporary file for '{name}' in {directory}")


# -- reading ------------------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    """What the ``.npy`` header of a member says about its array."""

    shape: tuple
    dtype: np.dtype
    fortran_order: bool


class ParamFile:
    """An open parameter file: its index, and the arrays it names on demand.

    Opening reads and checks the index and the header of every array the index
    names. Raises `FileNotFoundError` if there is no file, and `ValidationError`
    (naming the file, and the array where one is at fault) if it is not a
    parameter file or is damaged.

    Attributes
    ----------
    path : str
        The file.
    names : list of str
        The arrays to load, in network order (``__names__``).
    described : dict
        What each array was saved from (``__objects__``), by name.
    headers : dict
        The `Header` of each array in ``names``, by name.
    """

    def __init__(self, path):
        self.path = path
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"No parameter file at '{path}'; save one with sim.save_params(path)"
            )
        self._file = self._zip = None
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _open(self):
        try:
            # our own handle, closed by us whatever zipfile does on an error
            self._file = open(self.path, "rb")
            self._zip = zipfile.ZipFile(self._file)
            self._members = set(self._zip.namelist())
        except Exception as e:
            raise self._unreadable(f"{type(e).__name__}: {e}") from e
        marker = self._read_index("__format__", ndim=0, required=False)
        if marker is None or str(marker) != FORMAT:
            raise ValidationError(
                f"'{self.path}' is not a nengo_jax parameter file (expected the "
                f"marker {FORMAT!r}); save parameters with sim.save_params",
                attr="path",
            )
        names, objects = (self._read_index(name, ndim=1) for name in INDEX[1:])
        self.names = [str(n) for n in names]
        missing = [n for n in self.names if not self.has(n)]
        if missing or len(objects) != len(names):
            raise ValidationError(
                f"'{self.path}' is damaged: arrays {missing} are listed but missing",
                attr="path",
            )
        self.described = dict(zip(self.names, (str(o) for o in objects), strict=True))
        self.headers = {name: self.header(name) for name in self.names}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        for f in (self._zip, self._file):
            if f is not None:
                f.close()

    def has(self, name) -> bool:
        """Whether the file holds an array ``name`` (named in the index or not)."""
        return f"{name}.npy" in self._members

    def header(self, name) -> Header:
        """The header of array ``name``, which must hold numbers (no data read)."""
        return self._header(name, numeric=True)

    def _header(self, name, numeric=False) -> Header:
        """The header of array ``name``, checked against the member's size."""
        info = self._zip.getinfo(f"{name}.npy")
        try:
            with self._zip.open(info) as f:
                header = _read_header(f)
                data_start = f.tell()
        except Exception as e:
            raise self._unreadable(f"{type(e).__name__}: {e}", name) from e
        if numeric and header.dtype.kind not in "fiub":
            raise self._unreadable(f"it holds dtype {header.dtype}, not numbers", name)
        size = data_start + math.prod(header.shape) * header.dtype.itemsize
        if info.file_size != size:
            raise self._unreadable(
                f"it has {info.file_size} bytes, where its header (shape "
                f"{header.shape}, dtype {header.dtype}) makes {size}",
                name,
            )
        return header

    def read(self, name, header=None) -> np.ndarray:
        """The array ``name``; its header must be ``header`` (default: as read
        on opening), which the caller has checked."""
        header = self.headers[name] if header is None else header
        try:
            with self._zip.open(f"{name}.npy") as f:
                array = _FORMAT.read_array(f, allow_pickle=False)
        except Exception as e:
            raise self._unreadable(f"{type(e).__name__}: {e}", name) from e
        if (array.shape, array.dtype) != (header.shape, header.dtype):
            raise self._unreadable(
                f"it changed while being read (now shape {array.shape}, dtype "
                f"{array.dtype})",
                name,
            )
        return array

    def _read_index(self, name, ndim, required=True):
        """The index array ``name``: strings, with ``ndim`` dimensions (checked
        in its header first). If it is missing or not that: an error, or None
        if not ``required``."""
        header = self._header(name) if self.has(name) else None
        if header is None or header.dtype.kind != "U" or len(header.shape) != ndim:
            if not required:
                return None
            raise ValidationError(
                f"'{self.path}' is damaged: its list {name} is missing or malformed",
                attr="path",
            )
        return self.read(name, header)

    def _unreadable(self, why, name=None):
        where = "" if name is None else f"its array {name!r}: "
        return ValidationError(
            f"Cannot read '{self.path}' as a parameter file (it is corrupt, "
            f"truncated or not an .npz file: {where}{why}); save it again with "
            "sim.save_params",
            attr="path",
        )


def _read_header(f) -> Header:
    """The header of the ``.npy`` file ``f``, read from its start (no data)."""
    version = _FORMAT.read_magic(f)
    if version == (1, 0):
        shape, fortran_order, dtype = _FORMAT.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran_order, dtype = _FORMAT.read_array_header_2_0(f)
    else:
        raise ValueError(f".npy format version {version} is not supported")
    return Header(tuple(shape), np.dtype(dtype), bool(fortran_order))
