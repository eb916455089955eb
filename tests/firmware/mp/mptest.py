"""Minimal test runner for MicroPython (unix and WebAssembly): test_* functions, sync or async."""
# Prints PASS/FAIL/SKIP per test, heap figures, then "N passed, N failed, N skipped" that
# tests/firmware/test_micropython.py parses. Assertions use plain `assert` and `raises()`.

import gc
import sys

MODULES = ("t_link", "t_iso7816", "t_t1", "t_pinentry", "t_keypad", "t_display", "t_terminal",
           "t_policy", "t_screens", "t_slot_hw", "t_heap")


class Skip(Exception):  # named like pytest.skip
    """Raise to skip a test on a port that lacks what it needs (reported, not passed)."""


class raises:  # lower case: reads like pytest.raises
    """Context manager: the block must raise exc_type; the exception is kept in .value."""

    def __init__(self, exc_type):
        self.exc_type = exc_type
        self.value = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            raise AssertionError(f"{self.exc_type.__name__} not raised")
        if not isinstance(exc, self.exc_type):
            return False
        self.value = exc
        return True


async def main(modules=MODULES, only=None):
    """Run every test_* function of the modules; return the number of failures."""
    passed = 0
    failed = 0
    skipped = 0
    for name in modules:
        if only and not (only.startswith(name) or name.startswith(only)):
            continue
        mod = __import__(name)
        names = sorted(n for n in dir(mod) if n.startswith("test_"))
        for attr in names:
            label = f"{name}.{attr}"
            if only and only not in label:
                continue
            try:
                result = getattr(mod, attr)()
                if result is not None and hasattr(result, "send"):
                    await result
                passed += 1
                print("PASS", label)
            except Skip as exc:
                skipped += 1
                print("SKIP", label, exc.args[0] if exc.args else "")
            except Exception as exc:  # report and go on
                failed += 1
                print("FAIL", label)
                sys.print_exception(exc)
            gc.collect()
    gc.collect()
    print(f"HEAP end mem_alloc={gc.mem_alloc()} mem_free={gc.mem_free()}")
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return failed
