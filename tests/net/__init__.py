"""A fake internet in network namespaces, so network tests reach only servers they start.

``internet.FakeInternet`` builds it; ``hosts`` holds its servers and ``probe`` the clients
that tests run inside its host namespace.
"""
