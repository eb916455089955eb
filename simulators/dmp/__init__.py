"""The reference DMP host (docs/dmp-api.md): a real HTTPS service with SQLite that enforces the
shared medical record's rules, so DMP flows are tested against something that behaves like
the national host. TEST ONLY: its certificates come from the test PKI.

    from bifente.simulators.dmp import DmpHost
    with DmpHost(tmp_path, test_mode=True) as host:
        ...  # host.url, host.cafile, host.enroll_device(...)

The API is described in docs/dmp-api.md.
"""

from bifente.simulators.dmp.host import DmpHost

__all__ = ["DmpHost"]
