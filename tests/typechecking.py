"""The run-time type checker the test-suite hands to jaxtyping's import hook (see ``conftest.py``).

jaxtyping calls ``typechecked(fn)`` on a signature-only function it generates, inside its shape memo
(``@jaxtyped``), so dimension names agree across the arguments and the result of one call. typeguard 4's own
``@typechecked`` recompiles a function from its module's source and cannot find such a generated function;
this wrapper checks each annotated argument and the result with ``typeguard.check_type`` instead.
"""

import contextlib
import functools
import inspect

import jaxtyping
import typeguard


def typechecked(fn):
    """``fn`` with its arguments and its result checked against their annotations on every call."""
    signature = inspect.signature(fn)
    params = {
        name: p for name, p in signature.parameters.items() if p.annotation is not inspect.Parameter.empty
    }
    result = signature.return_annotation

    @functools.wraps(fn)
    def checked(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        for name, value in bound.arguments.items():
            if name not in params:
                continue
            kind, annotation = params[name].kind, params[name].annotation
            if kind is inspect.Parameter.VAR_POSITIONAL:
                values = value
            elif kind is inspect.Parameter.VAR_KEYWORD:
                values = value.values()
            else:
                values = (value,)
            for one in values:
                typeguard.check_type(one, annotation)
        out = fn(*args, **kwargs)
        if result is not inspect.Signature.empty:
            typeguard.check_type(out, result)
        return out

    return checked


@contextlib.contextmanager
def ill_typed():
    """Run-time type checks off for a call that breaks the annotations on purpose.

    For the tests of ldjax's own error messages (a scalar where a batch is expected, an unknown precision):
    without it jaxtyping would reject the call before ldjax's check could say what is wrong.
    """
    jaxtyping.config.update("jaxtyping_disable", True)
    try:
        yield
    finally:
        jaxtyping.config.update("jaxtyping_disable", False)
