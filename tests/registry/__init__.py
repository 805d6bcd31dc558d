"""A real OCI registry on 127.0.0.1 and images built locally, for the image-pulling tests.

The machines that run the suite have no internet, so nothing may be pulled from a public
registry: the tests build their own images (from Debian's ``busybox-static`` and from Debian
packages) and serve them from Debian's ``docker-registry`` on the loopback address.
"""
