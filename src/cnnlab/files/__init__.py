"""Files: the low-level mechanisms every surface that writes or fetches a file builds on.

- :mod:`cnnlab.files.atomic`: the one atomic writer (temporary file in the same folder, fsync,
  ``os.replace``, modes from the umask, its own stale temporaries removed).
- :mod:`cnnlab.files.download`: the one streaming downloader (digest, size cap, leftovers of killed
  downloads removed, mirror entries that are not regular files refused).
- :mod:`cnnlab.files.kinds`: regular files versus FIFOs, sockets and devices, which are never read as data.
- :mod:`cnnlab.files.tables`: CSV writing with cells escaped against spreadsheet formula injection.

A leaf of the layering: it imports only :mod:`cnnlab.errors` (and the standard library), so data,
models, runs and everything above can use it. Importing it loads neither NumPy nor torch.
"""
