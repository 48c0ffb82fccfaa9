"""netio: kernel-bypass packet I/O for Python, one burst API over every backend."""
