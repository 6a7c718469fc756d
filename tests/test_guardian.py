"""The PersistenceGuardian's verdicts on methods that keep or break the covenant."""
import pytest

from batos.guardian import audit

COVENANT_KEPT = {
    "pure": "def f(self, x):\n    return x.upper()\n",
    "assign_then_covenant": "def f(self, x):\n    self.name = x\n    self._p_changed = True\n",
    "covenant_before_return": ("def f(self, x):\n    self.items.append(x)\n    self._p_changed = True\n"
                               "    return len(self.items)\n"),
    "setattr_constant": "def f(self, v):\n    setattr(self, 'level', v)\n    self._p_changed = True\n",
    "branch_returns_guarded": ("def f(self, x):\n    if x:\n        self.a = x\n        self._p_changed = True\n"
                               "        return 1\n    self.b = 0\n    self._p_changed = True\n    return 0\n"),
    "early_return_before_change": ("def f(self, x):\n    if not x:\n        return None\n    self.a = x\n"
                                   "    self._p_changed = True\n"),
    "local_list_is_not_state": "def f(self, n):\n    out = []\n    out.append(n)\n    return out\n",
    "allowed_import": "import math\n\ndef f(self, n):\n    import json\n    return math.sqrt(n)\n",
    "reads_slot": "def f(self):\n    return self.count * 2\n",
}

COVENANT_BROKEN = {
    "assign_no_covenant": "def f(self, x):\n    self.name = x\n",
    "augassign": "def f(self):\n    self.count += 1\n    return self.count\n",
    "subscript": "def f(self, k, v):\n    self.table[k] = v\n",
    "inplace_append": "def f(self, x):\n    self.items.append(x)\n",
    "alias_mutation": "def f(self, x):\n    items = self.items\n    items.append(x)\n",
    "setattr_self": "def f(self, v):\n    setattr(self, 'level', v)\n",
    "delete_slot": "def f(self):\n    del self.cache\n",
    "return_after_change": ("def f(self, x):\n    if x:\n        self.a = x\n        return 1\n"
                            "    self._p_changed = True\n"),
    "covenant_not_last": "def f(self, x):\n    self._p_changed = True\n    self.a = x\n",
    "covenant_false": "def f(self, x):\n    self.a = x\n    self._p_changed = False\n",
}

DANGEROUS = {
    "import_os": ("def f(self):\n    import os\n    return os.listdir('.')\n", "import of 'os'"),
    "from_subprocess": ("def f(self):\n    from subprocess import run\n    return run\n", "subprocess"),
    "eval": ("def f(self, s):\n    return eval(s)\n", "'eval'"),
    "exec": ("def f(self, s):\n    exec(s)\n", "'exec'"),
    "open": ("def f(self):\n    return open('/etc/passwd').read()\n", "'open'"),
    "dunder_import": ("def f(self):\n    return __import__('os')\n", "__import__"),
    "compile": ("def f(self):\n    return compile('1', 'x', 'eval')\n", "'compile'"),
    "subclass_walk": ("def f(self):\n    return ().__class__.__bases__[0].__subclasses__()\n", "__class__"),
    "globals": ("def f(self):\n    return globals()\n", "'globals'"),
    "p_jar": ("def f(self):\n    return self._p_jar\n", "_p_jar"),
    "private_slot": ("def f(self):\n    return self._slots\n", "_slots"),
    "getattr_dunder": ("def f(self, x):\n    return getattr(x, '__class__')\n", "private attribute"),
    "getattr_dynamic": ("def f(self, x, n):\n    return getattr(x, n)\n", "constant attribute name"),
    "frame_walk": ("def f(self):\n    g = (i for i in [1])\n    return g.gi_frame.f_back\n", "gi_frame"),
    "format_reach": ("def f(self, x):\n    return '{0.gi_frame}'.format(x)\n", "format fields"),
    "format_on_variable": ("def f(self, fmt, x):\n    return fmt.format(x)\n", "literal string"),
    "bare_except": ("def f(self):\n    try:\n        return 1\n    except:\n        return 2\n", "bare"),
    "catch_base": ("def f(self):\n    try:\n        return 1\n    except BaseException:\n        return 2\n",
                   "BaseException"),
    "global": ("def f(self):\n    global x\n    x = 1\n", "global"),
    "class_stmt": ("def f(self):\n    class A:\n        pass\n    return A\n", "class"),
    "relative_import": ("def f(self):\n    from . import x\n    return x\n", "relative"),
    "builtins_name": ("def f(self):\n    return __builtins__\n", "__builtins__"),
    "type_three_args": ("def f(self):\n    return type('X', (), {})\n", "one argument"),
    "type_of_type": ("def f(self, x):\n    return type(type(x))\n", "metaclass"),
    "namedtuple": ("def f(self):\n    import collections\n    return collections.namedtuple('P', 'x')\n",
                   "collections.namedtuple"),
    "namedtuple_reexported": ("def f(self):\n    from statistics import namedtuple\n    return namedtuple\n",
                              "collections.namedtuple"),
    "update_wrapper": ("def f(self, g, h):\n    import functools\n    return functools.update_wrapper(g, h)\n",
                       "update_wrapper"),
    "singledispatch": ("def f(self, g):\n    from functools import singledispatch\n    return singledispatch(g)\n",
                       "singledispatch"),
    "abc_register": ("def f(self):\n    import collections.abc\n    return collections.abc.Sized.register(list)\n",
                     "'register'"),
    "set_dunder_name": ("def f(self, g):\n    g.__name__ = 'x'\n    return g\n", "not set or deleted"),
    "setattr_dunder_doc": ("def f(self, g):\n    setattr(g, '__doc__', 'x')\n    return g\n", "'__doc__'"),
    "dunder_module": ("def f(self, x):\n    return type(x).__module__\n", "'__module__'"),
}

HARMLESS_DUNDERS = {
    "type_name": "def f(self, x):\n    return type(x).__name__\n",
    "local_function": ("def f(self):\n    def g():\n        'Doc.'\n        return 1\n"
                       "    return [g.__name__, g.__qualname__, g.__doc__]\n"),
    "qualname": "def f(self):\n    return int.__qualname__\n",
    "method_doc": "def f(self):\n    return self.f.__doc__\n",
    "getattr_constant": "def f(self, x):\n    return [getattr(x, '__name__', None), hasattr(x, '__doc__')]\n",
}


@pytest.mark.parametrize("name", sorted(COVENANT_KEPT))
def test_guardian_accepts_methods_that_keep_the_covenant(name):
    report = audit(COVENANT_KEPT[name], "f")
    assert report.ok, report.findings


@pytest.mark.parametrize("name", sorted(COVENANT_BROKEN))
def test_guardian_refuses_covenant_breaches(name):
    report = audit(COVENANT_BROKEN[name], "f")
    assert not report.ok
    assert report.mutates
    assert any("Covenant" in f or "_p_" in f for f in report.findings), report.findings


@pytest.mark.parametrize("name", sorted(DANGEROUS))
def test_guardian_refuses_the_obviously_dangerous(name):
    source, needle = DANGEROUS[name]
    report = audit(source, "f")
    assert not report.ok
    assert any(needle in f for f in report.findings), report.findings


@pytest.mark.parametrize("name", sorted(HARMLESS_DUNDERS))
def test_guardian_accepts_reads_of_names_and_docstrings(name):
    report = audit(HARMLESS_DUNDERS[name], "f")
    assert report.ok, report.findings


@pytest.mark.parametrize("source, needle", [
    ("", "empty"),
    ("def f(self:\n", "syntax error"),
    ("x = 1\n", "exactly one function"),
    ("def f(self):\n    return 1\n\ndef g(self):\n    return 2\n", "exactly one function"),
    ("def g(self):\n    return 1\n", "named 'g'"),
    ("def f(x):\n    return x\n", "'self'"),
    ("def f(self):\n    return 1\nprint(1)\n", "top level"),
    ("def f(self, a=[]):\n    return a\n", "defaults"),
])
def test_guardian_refuses_sources_that_are_not_one_method(source, needle):
    report = audit(source, "f")
    assert not report.ok
    assert any(needle in f for f in report.findings), report.findings


def test_guardian_reports_signature_and_doc():
    report = audit('def greet(self, name, *, loud=False):\n    """Say hello."""\n    return name\n', "greet")
    assert report.ok
    assert report.signature == "greet(name, *, loud=False)"
    assert report.doc == "Say hello."
    assert report.accepts(1, {"loud": True}) is None
    assert "takes 1" in report.accepts(2, {})
    assert "loudly" in report.accepts(1, {"loudly": 1})


def test_guardian_limits_source_size():
    source = "def f(self):\n    return " + "1 + " * 10_000 + "1\n"
    report = audit(source, "f", max_bytes=1000)
    assert not report.ok and "larger than" in report.findings[0]
