"""The sandbox's red team and benign suite (data; the tests are in test_sandbox*.py).

Each attack is a method named ``attack`` taking ``path`` (a file the attack tries to
create or change: the canary).  The classes follow the CVEs the issue names and more:

    CVE-2023-37271  generator/frame walks        CVE-2023-41039  format-string reach
    CVE-2024-47532  AttributeError.obj leak      CVE-2025-22153  try/except* confusion
    CVE-2025-5120   submodule walks (smolagents) CVE-2025-9959   dunder reach by aliasing
    ctypes escape (smolagents)

and the routes to a class besides the class statement and type(name, bases, ns): a
metaclass from type() of a class (type(int) is type, type(Mapping) is ABCMeta), class
factories (collections.namedtuple, re-exported by statistics and functools), and the
allowed-module helpers that reached past the guards (functools.update_wrapper/wraps
pouring another module's globals into the method's, singledispatch().register
evaluating a string annotation with eval).

Every attack must be refused at install (the PersistenceGuardian, with RestrictedPython's
compile) or contained at run time (MethodError or Timeout), with the kernel alive and
the canary untouched.  ``test_sandbox.py`` also runs each attack with the guardian
bypassed, straight into a sandbox worker, so that the deeper layers are tested on
their own.
"""
from __future__ import annotations

import random
import textwrap


def _seeded(seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(0, 10 ** 6) for _ in range(3)]


def m(body: str, name: str = "attack", params: str = "path") -> str:
    return f"def {name}(self, {params}):\n" + textwrap.indent(textwrap.dedent(body).strip("\n"), "    ") + "\n"


ATTACKS: list[tuple[str, str, str]] = [
    # -- imports of what reaches the machine -------------------------------------------------
    ("import_os", "import", m("import os\nos.system('touch ' + path)\nreturn 1")),
    ("import_subprocess", "import", m("import subprocess\nsubprocess.run(['touch', path])\nreturn 1")),
    ("from_os_import", "import", m("from os import system\nsystem('touch ' + path)\nreturn 1")),
    ("dunder_import", "import", m("__import__('os').system('touch ' + path)\nreturn 1")),
    ("import_builtins", "builtins", m("import builtins\nbuiltins.open(path, 'w').write('x')\nreturn 1")),
    ("import_sys_modules", "import", m("import sys\nsys.modules['os'].system('touch ' + path)\nreturn 1")),
    ("import_importlib", "import", m("import importlib\nimportlib.import_module('os').remove(path)\nreturn 1")),
    ("pickle_rce", "pickle", m("import pickle\nreturn pickle.loads(b\"cos\\nsystem\\n(S'id'\\ntR.\")")),
    ("marshal_code", "pickle", m("import marshal\nreturn marshal.loads(b'')")),
    ("ctypes_libc", "ctypes", m("import ctypes\nctypes.CDLL(None).system(b'touch ' + path.encode())\nreturn 1")),
    ("socket_connect", "sockets", m("import socket\nsocket.create_connection(('127.0.0.1', 22), 1)\nreturn 1")),
    ("thread_start", "threads", m("import threading\nthreading.Thread(target=print).start()\nreturn 1")),
    ("low_level_thread", "threads", m("import _thread\n_thread.start_new_thread(print, ())\nreturn 1")),
    ("relative_import", "import", m("from . import os\nreturn 1")),
    ("import_time_after_strftime", "import", m("""
        import datetime
        datetime.date(2024, 1, 5).strftime('%A')
        import time
        return repr(time)""")),
    ("import_strptime_module", "import", m("import _strptime\nreturn repr(_strptime)")),
    # -- builtins that reach outside ---------------------------------------------------------
    ("open_write", "builtins", m("f = open(path, 'w')\nf.write('x')\nreturn 1")),
    ("eval_code", "builtins", m("return eval(\"__import__('os').getcwd()\")")),
    ("exec_compile", "builtins", m("exec(compile('import os', 'x', 'exec'))\nreturn 1")),
    ("globals_builtins", "builtins", m("return globals()['__builtins__']")),
    ("vars_self", "builtins", m("return vars(self)")),
    ("builtins_name", "builtins", m("b = __builtins__\nreturn b['open'](path, 'w')")),
    ("builtins_tamper_module", "builtins", m("import math\nmath.sqrt = len\nreturn 1")),
    ("input_stdin", "stdin", m("return input()")),
    ("exit_builtin", "exit", m("exit(0)\nreturn 1")),
    ("memoryview_peek", "builtins", m("return memoryview(b'x').tolist()")),
    ("type_makes_class", "classes", m("T = type('T', (), {'x': 1})\nreturn T.x")),
    ("class_statement", "classes", m("class T:\n    pass\nreturn 1")),
    # -- a class by another route: every metaclass is refused, every class factory hidden --
    ("type_of_type", "classes", m("T = type(type(1))\nreturn repr(T('X', (), {'x': 1}))")),
    ("type_of_int", "classes", m("return repr(type(int)('X', (int,), {}))")),
    ("type_alias_of_type", "classes", m("t = type\nmeta = t(t(1))\nreturn repr(meta('X', (), {}))")),
    ("type_of_builtin_function", "classes", m("return repr(type(len)('X', (), {}))")),
    ("type_of_template", "classes", m("""
        import string
        return repr(type(string.Template)('T', (string.Template,), {'delimiter': '%'}))""")),
    ("abc_metaclass", "classes", m("""
        import collections.abc
        return repr(type(collections.abc.Mapping)('X', (), {}))""")),
    ("abc_metaclass_of_fraction", "classes", m("""
        import fractions
        return repr(type(fractions.Fraction)('X', (), {}))""")),
    ("enum_metaclass", "classes", m("import re\nreturn repr(type(re.RegexFlag)('X', (), {}))")),
    ("enum_functional_api", "classes", m("import re\nreturn repr(type(re.I)('X', 'a b'))")),
    ("namedtuple_class", "classes", m("""
        import collections
        return repr(collections.namedtuple('P', 'x y'))""")),
    ("namedtuple_reexported", "classes", m("""
        from statistics import namedtuple
        return repr(namedtuple('P', 'x y'))""")),
    ("namedtuple_by_getattr", "classes", m("""
        import functools
        return repr(getattr(functools, 'named' + 'tuple')('P', 'x'))""")),
    ("partial_of_metaclass", "classes", m("""
        import functools
        return repr(functools.partial(type(int), 'X', ())({}))""")),
    ("operator_call_metaclass", "classes", m("""
        import operator
        return repr(operator.call(type(int), 'X', (), {}))""")),
    ("map_metaclass", "classes", m("return repr(list(map(type(int), ['X'], [()], [{}])))")),
    ("metaclass_from_a_list", "classes", m("""
        metas = [type(t) for t in (int, str)]
        return repr(metas[0]('X', (), {}))""")),
    ("types_new_class", "classes", m("import types\nreturn repr(types.new_class('X'))")),
    ("enum_module", "classes", m("import enum\nreturn repr(enum.Enum('X', 'a b'))")),
    ("abc_module", "classes", m("import abc\nreturn repr(abc.ABCMeta('X', (), {}))")),
    ("make_dataclass", "classes", m("import dataclasses\nreturn repr(dataclasses.make_dataclass('X', ['a']))")),
    ("typing_namedtuple", "classes", m("import typing\nreturn repr(typing.NamedTuple('X', [('a', int)]))")),
    ("abc_register", "classes", m("""
        import collections.abc
        collections.abc.Hashable.register(list)
        return isinstance([], collections.abc.Hashable)""")),
    # -- allowed-module helpers that reached past the guards ---------------------------------
    ("update_wrapper_globals", "aliasing", m("""
        import functools
        import statistics
        def f():
            return 0
        functools.update_wrapper(f, statistics.mean, assigned=(), updated=('__glob' + 'als__',))
        sys.modules['os'].system('touch ' + path)
        return sys.modules['os'].getcwd()""")),
    ("wraps_globals", "aliasing", m("""
        import functools
        import statistics
        def f():
            return 0
        functools.wraps(statistics.median, (), ('__glob' + 'als__',))(f)
        return sorted(sys.modules)[:3]""")),
    ("singledispatch_annotation_eval", "eval", m("""
        import functools
        def base(x):
            return 0
        def spy(x: "(leak := ().__class__.__base__.__subclasses__()) and int"):
            return 1
        functools.singledispatch(base).register(spy)
        return len(leak)""")),
    # -- walks from a value to frames, globals and classes -----------------------------------
    ("subclass_walk", "subclass", m("""
        for c in ().__class__.__bases__[0].__subclasses__():
            if c.__name__ == '_wrap_close':
                c.__init__.__globals__['system']('touch ' + path)
        return 1""")),
    ("subclass_walk_dynamic", "subclass", m("""
        base = getattr(getattr((), '__cla' + 'ss__'), '__ba' + 'ses__')[0]
        return len(getattr(base, '__subcla' + 'sses__')())""")),
    ("mro_walk", "subclass", m("return type(()).mro()[-1]")),
    ("mro_walk_dynamic", "subclass", m("name = 'm' + 'ro'\nreturn getattr(type(()), name)()")),
    ("generator_frame", "frames", m("""
        g = (x for x in [1])
        return g.gi_frame.f_back.f_globals""")),
    ("generator_frame_dynamic", "frames", m("""
        g = (x for x in [1])
        fr = getattr(g, 'gi_' + 'frame')
        return getattr(fr, 'f_' + 'globals')""")),
    ("generator_code", "frames", m("g = (x for x in [1])\nreturn g.gi_code")),
    ("traceback_frame", "frames", m("""
        try:
            1 / 0
        except Exception as e:
            return e.__traceback__.tb_frame.f_back.f_globals""")),
    ("traceback_frame_dynamic", "frames", m("""
        try:
            1 / 0
        except Exception as e:
            tb = getattr(e, '__trace' + 'back__')
            return getattr(tb, 'tb_' + 'frame')""")),
    ("with_traceback", "frames", m("""
        try:
            1 / 0
        except Exception as e:
            return e.with_traceback(None)""")),
    ("function_globals", "frames", m("f = lambda: 0\nreturn f.__globals__")),
    ("function_globals_dynamic", "frames", m("f = lambda: 0\nreturn getattr(f, '__glo' + 'bals__')")),
    ("exception_context_walk", "frames", m("""
        try:
            try:
                1 / 0
            except Exception:
                raise ValueError('x')
        except ValueError as e:
            return getattr(e, '__con' + 'text__')""")),
    ("async_frame", "frames", m("async def f():\n    pass\nreturn f().cr_frame")),
    # -- format strings ----------------------------------------------------------------------
    ("format_attr_leak", "format", m("return '{0.__class__.__mro__}'.format(self)")),
    ("format_unbound", "format", m("return str.format('{0.__init__.__globals__}', path)")),
    ("format_dynamic_template", "format", m("t = '{0.' + '__class__}'\nreturn t.format(path)")),
    ("format_map_leak", "format", m("return '{x.__class__}'.format_map({'x': 1})")),
    ("format_item_leak", "format", m("t = '{0[' + 'k]}'\nreturn t.format({'k': 1})")),
    ("string_formatter", "format", m("from string import Formatter\nreturn Formatter().format('{0.__class__}', 1)")),
    ("string_formatter_attr", "format", m("import string\nreturn string.Formatter().get_field('0.real', [1], {})")),
    ("format_via_map", "format", m("return list(map(str.format, ['{0.__class__}'], [1]))")),
    # -- submodules and helpers that reach attributes unguarded ------------------------------
    ("re_enum_sys", "submodule", m("import re\nreturn re.enum.sys.modules['os'].getcwd()")),
    ("statistics_sys", "submodule", m("import statistics\nreturn statistics.sys.modules")),
    ("random_private_os", "submodule", m("import random\nreturn random._os.getcwd()")),
    ("json_decoder_walk", "submodule", m("import json\nreturn json.decoder.re.enum.sys")),
    ("collections_abc_sys", "submodule", m("import collections\nreturn collections.abc.sys")),
    ("operator_attrgetter", "aliasing", m("import operator\nreturn operator.attrgetter('__globals__')(len)")),
    ("operator_methodcaller", "aliasing", m("import operator\nreturn operator.methodcaller('__reduce_ex__', 2)(path)")),
    ("reduce_getattr", "aliasing", m("import functools\nreturn functools.reduce(getattr, ['__class__', '__base__'], path)")),
    ("getattr_alias", "aliasing", m("g = getattr\nreturn g(path, '__cl' + 'ass__')")),
    ("attribute_error_obj", "leak", m("""
        try:
            return path.no_such_attribute
        except AttributeError as e:
            return e.obj""")),
    ("try_star", "confusion", m("""
        try:
            raise ExceptionGroup('g', [ValueError(1)])
        except* ValueError as eg:
            return 1
        return 2""")),
    # -- the object and the image ------------------------------------------------------------
    ("private_slots", "image", m("return self._slots")),
    ("private_state", "image", m("return getattr(self, '_' + 'st')")),
    ("type_of_self", "image", m("return type(self).__getattr__")),
    ("replace_parents", "image", m("self.parents = []\nself._p_changed = True\nreturn 1")),
    ("overwrite_method", "image", m("self.attack = 1\nself._p_changed = True\nreturn 1")),
    ("covenant_breach", "covenant", m("self.stolen = path\nreturn 1")),
    ("covenant_breach_hidden", "covenant", m("""
        put = lambda box: box.append('x')
        put(self.box)
        return 1""")),
    ("store_a_function", "image", m("self.hook = lambda: 0\nself._p_changed = True\nreturn 1")),
    ("set_changed_elsewhere", "covenant", m("other = [1]\nother._p_changed = True\nreturn 1")),
    # -- resources and process exit ----------------------------------------------------------
    ("infinite_loop", "cpu", m("while True:\n    pass")),
    ("infinite_loop_swallowing", "cpu", m("""
        while True:
            try:
                sum(range(1000))
            except Exception:
                pass""")),
    ("regex_catastrophic", "cpu", m("import re\nreturn re.match('(a+)+$', 'a' * 40 + 'b')")),
    ("bigint_power", "cpu", m("return len(str(10 ** (10 ** 8)))")),
    ("memory_bomb", "memory", m("return len('a' * (10 ** 11))")),
    ("memory_growth", "memory", m("""
        hoard = []
        while True:
            hoard.append(bytearray(10 ** 7))""")),
    ("recursion_bomb", "recursion", m("""
        def down(n):
            return down(n + 1)
        return down(0)""")),
    ("nested_repr", "recursion", m("""
        x = []
        for i in range(200000):
            x = [x]
        return repr(x)""")),
    ("system_exit", "exit", m("raise SystemExit(0)")),
    ("keyboard_interrupt", "exit", m("raise KeyboardInterrupt")),
    ("sys_exit", "exit", m("import sys\nsys.exit(3)")),
    ("os_exit", "exit", m("import os\nos._exit(0)")),
    ("catch_base_exception", "exit", m("""
        try:
            while True:
                pass
        except BaseException:
            return 1""")),
    ("print_flood", "output", m("while True:\n    print('x' * 1000)")),
]

# (name, source, args, kwargs, expected return value)
BENIGN: list[tuple[str, str, list, dict, object]] = [
    ("loop_sum", m("""
        total = 0
        for i in range(n):
            total += i
        return total""", "loop_sum", "n"), [1000], {}, 499500),
    ("while_loop", m("""
        steps = 0
        while n != 1:
            n = n // 2 if n % 2 == 0 else 3 * n + 1
            steps += 1
        return steps""", "while_loop", "n"), [27], {}, 111),
    ("recursion", m("""
        def fib(k):
            return k if k < 2 else fib(k - 1) + fib(k - 2)
        return fib(n)""", "recursion", "n"), [20], {}, 6765),
    ("deep_recursion", m("""
        def depth(k):
            return 0 if k == 0 else 1 + depth(k - 1)
        return depth(n)""", "deep_recursion", "n"), [400], {}, 400),
    ("closures", m("""
        def make(k):
            def add(x):
                return x + k
            return add
        adders = [make(i) for i in range(3)]
        return [f(10) for f in adders]""", "closures", ""), [], {}, [10, 11, 12]),
    ("nonlocal_counter", m("""
        count = 0
        def tick():
            nonlocal count
            count += 1
        for _ in range(5):
            tick()
        return count""", "nonlocal_counter", ""), [], {}, 5),
    ("comprehensions", m("""
        squares = [i * i for i in range(6)]
        evens = {i for i in squares if i % 2 == 0}
        index = {str(i): i for i in range(3)}
        return [squares, sorted(evens), index, sum(i for i in range(4))]""", "comprehensions", ""),
     [], {}, [[0, 1, 4, 9, 16, 25], [0, 4, 16], {"0": 0, "1": 1, "2": 2}, 6]),
    ("generators", m("""
        def evens(limit):
            for i in range(limit):
                if i % 2 == 0:
                    yield i
        return list(evens(9))""", "generators", ""), [], {}, [0, 2, 4, 6, 8]),
    ("unpacking", m("""
        a, (b, c), *rest = [1, (2, 3), 4, 5]
        first, *_ = 'xyz'
        return [a, b, c, rest, first]""", "unpacking", ""), [], {}, [1, 2, 3, [4, 5], "x"]),
    ("math_and_statistics", m("""
        import math
        import statistics
        return [math.isqrt(n), round(statistics.mean([1, 2, 3, 4]), 2), math.gcd(12, 18)]""",
     "math_and_statistics", "n"), [17], {}, [4, 2.5, 6]),
    ("regex_and_json", m("""
        import json
        import re
        words = re.findall(r'[a-z]+', text.lower())
        return json.loads(json.dumps({'words': words}))""", "regex_and_json", "text"),
     ["Hello, World!"], {}, {"words": ["hello", "world"]}),
    ("collections_and_itertools", m("""
        from collections import Counter, deque
        import itertools
        counts = Counter(text)
        window = deque(range(5), maxlen=3)
        pairs = list(itertools.combinations('abc', 2))
        return [counts.most_common(1)[0][0], list(window), len(pairs)]""",
     "collections_and_itertools", "text"), ["banana"], {}, ["a", [2, 3, 4], 3]),
    ("functools_heapq_bisect", m("""
        import bisect
        import functools
        import heapq
        product = functools.reduce(lambda a, b: a * b, [1, 2, 3, 4])
        smallest = heapq.nsmallest(2, [5, 1, 4, 2])
        return [product, smallest, bisect.bisect([1, 3, 5], 4)]""", "functools_heapq_bisect", ""),
     [], {}, [24, [1, 2], 2]),
    ("decimal_fraction_datetime", m("""
        import datetime
        from decimal import Decimal
        from fractions import Fraction
        d = datetime.date(2024, 3, 1) - datetime.timedelta(days=1)
        return [str(Decimal('1.10') + Decimal('2.20')), str(Fraction(1, 3) + Fraction(1, 6)), d.isoformat()]""",
     "decimal_fraction_datetime", ""), [], {}, ["3.30", "1/2", "2024-02-29"]),
    ("string_and_textwrap", m("""
        import string
        import textwrap
        return [string.ascii_lowercase[:3], textwrap.shorten('a b c d e f g', width=9), '-'.join(['x', 'y'])]""",
     "string_and_textwrap", ""), [], {}, ["abc", "a b [...]", "x-y"]),
    ("seeded_random", m("""
        import random
        rng = random.Random(seed)
        return [rng.randint(0, 10 ** 6) for _ in range(3)]""", "seeded_random", "seed"),
     [7], {}, _seeded(7)),
    ("format_plain_fields", m("""
        return ['{} has {:.1f} points'.format(name, score), '{n}!'.format(n=name), f'{name:>6}|{score:05.1f}']""",
     "format_plain_fields", "name, score"), ["ada", 9.25], {}, ["ada has 9.2 points", "ada!", "   ada|009.2"]),
    ("exceptions_handled", m("""
        try:
            return int(text)
        except ValueError as e:
            return 'not a number: ' + str(e).split(':')[0]""", "exceptions_handled", "text"),
     ["x1"], {}, "not a number: invalid literal for int() with base 10"),
    ("sorting_with_keys", m("""
        people = [{'n': 'b', 'a': 3}, {'n': 'a', 'a': 3}, {'n': 'c', 'a': 1}]
        return [p['n'] for p in sorted(people, key=lambda p: (-p['a'], p['n']))]""", "sorting_with_keys", ""),
     [], {}, ["a", "b", "c"]),
    ("kwargs_and_defaults", m("""
        return {'a': a, 'b': b, 'rest': sorted(extra)}""", "kwargs_and_defaults", "a, b=2, **extra"),
     [1], {"z": 0, "y": 0}, {"a": 1, "b": 2, "rest": ["y", "z"]}),
    ("getattr_constant", m("""
        return [getattr(self, 'missing', 'none'), hasattr(self, 'name'), self.name]""",
     "getattr_constant", ""), [], {}, ["none", True, "genesis"]),
    ("slot_read", m("return self.doc.split(' ')[:2]", "slot_read", ""), [], {}, ["The", "first"]),
    ("returns_none", m("x = 1", "returns_none", ""), [], {}, None),
    ("augmented_items", m("""
        counts = {}
        for word in words:
            counts[word.lower()] = counts.get(word.lower(), 0)
            counts[word.lower()] += 1
        grid = [[0, 0], [0, 0]]
        grid[len(grid) - 1][0] += 3
        return [counts, grid]""", "augmented_items", "words"), [["A", "a", "b"]], {},
     [{"a": 2, "b": 1}, [[0, 0], [3, 0]]]),
    ("big_but_bounded", m("return sum(i * i for i in range(n))", "big_but_bounded", "n"),
     [200000], {}, sum(i * i for i in range(200000))),
    # the C code of datetime imports time and _strptime for itself; the method may not
    ("strftime", m("""
        import datetime
        d = datetime.date(2024, 1, 5)
        return [d.strftime('%A'), f'{d:%d %B %Y}', format(d, '%j'), d.timetuple()[7],
                datetime.time(13, 4).strftime('%H:%M'), datetime.date.today().year > 2000]""",
     "strftime", ""), [], {}, ["Friday", "05 January 2024", "005", 5, "13:04", True]),
    ("strptime", m("""
        import datetime
        when = datetime.datetime.strptime('2024-01-05', '%Y-%m-%d')
        late = datetime.datetime.strptime('Friday 5 January 2024 10 PM', '%A %d %B %Y %I %p')
        return [when.isoformat(), when.weekday(), late.hour]""", "strptime", ""),
     [], {}, ["2024-01-05T00:00:00", 4, 22]),
    # the harmless dunders: names and docstrings, read only
    ("type_name", m("""
        return [type(x).__name__ for x in (1, 'a', [], None, self)] + [int.__qualname__]""",
     "type_name", ""), [], {}, ["int", "str", "list", "NoneType", "SlotSelf", "int"]),
    ("function_name", m("""
        def helper():
            return 1
        twice = lambda x: 2 * x
        return [helper.__name__, helper.__qualname__, twice.__name__, getattr(helper, '__name__')]""",
     "function_name", ""), [], {}, ["helper", "function_name.<locals>.helper", "<lambda>", "helper"]),
    ("docstrings", m("""
        '''Reads docstrings.'''
        def helper():
            '''Helps.'''
            return 1
        def bare():
            return 2
        return [helper.__doc__, bare.__doc__, self.docstrings.__doc__, len.__doc__.split('.')[0]]""",
     "docstrings", ""), [], {}, ["Helps.", None, "Reads docstrings.",
                                  "Return the number of items in a container"]),
]

# common calls into every allowed module, one expression each: all must work in a
# locked-down worker (the C code's own imports, lazy imports that need files, codecs)
LIBRARY_TOUR = [
    "datetime.date(2024, 1, 5).strftime('%A %d %B %Y %j %U %a %b')",
    "datetime.datetime(2024, 1, 5, 3, 4).strftime('%c %x %X %p %H:%M:%S')",
    "f'{datetime.date(2024, 1, 5):%d %B}'",
    "datetime.date(2024, 1, 5).timetuple()[:3]",
    "datetime.datetime(2024, 1, 5).utctimetuple()[:3]",
    "datetime.date.today().year > 2000",
    "datetime.datetime.now().astimezone().year > 2000",
    "datetime.datetime.fromtimestamp(0, datetime.timezone.utc).isoformat()",
    "datetime.datetime.strptime('05/Jan/2024:10:00:00 +0100', '%d/%b/%Y:%H:%M:%S %z').utcoffset()",
    "datetime.datetime.strptime('Friday 5 January 2024', '%A %d %B %Y').day",
    "datetime.date.fromisoformat('2024-01-05').isocalendar()",
    "re.compile(r'(\\w+)@(\\w+)\\.com', re.I | re.M).findall('a@b.com C@D.COM')",
    "re.compile(r'(a)(b)').sub(r'\\2\\1', 'abab')",
    "re.match(r'(a)(b)', 'ab').expand(r'\\2\\1')",
    "re.compile('(?i)stra\u00dfe').match('STRASSE') is None",
    "re.split(r'\\s*,\\s*', 'a , b,c')",
    "re.subn('a', lambda m: 'A', 'banana')",
    "json.dumps({'a': [1, 2.5, None, True], 'b': '\u00e9'}, indent=2, sort_keys=True)",
    "json.loads('{\"a\": [1, 2.5e3, null]}', parse_float=decimal.Decimal)",
    "json.decoder.scanstring('\"abc\"', 1)",
    "str(decimal.Decimal('1.255').quantize(decimal.Decimal('0.01'), rounding=decimal.ROUND_HALF_UP))",
    "str(decimal.Decimal('2').sqrt()), decimal.Decimal('3.5').as_tuple()",
    "format(decimal.Decimal('1234.5'), ',.2f'), format(decimal.Decimal('1234.5'), 'n')",
    "str(decimal.Context(prec=5).divide(decimal.Decimal(1), decimal.Decimal(7)))",
    "statistics.mean([1, 2, 3, 4]), statistics.median([3, 1, 2]), statistics.mode([1, 1, 2])",
    "statistics.stdev([1, 2, 3, 4]), statistics.quantiles([1, 2, 3, 4, 5, 6, 7, 8], n=4)",
    "statistics.correlation([1, 2, 3], [2, 4, 7]), statistics.linear_regression([1, 2, 3], [2, 4, 6])",
    "str(statistics.mean([fractions.Fraction(1, 3), fractions.Fraction(1, 6)]))",
    "statistics.NormalDist(0, 1).inv_cdf(0.9), len(statistics.NormalDist(0, 1).samples(3, seed=1))",
    "random.Random('seed').random(), random.Random(b'seed').random(), random.Random().random() < 1",
    "random.Random(1).choices('abc', weights=[1, 2, 3], k=4), random.Random(1).sample(range(100), 3)",
    "random.Random(1).gauss(0, 1), random.Random(1).betavariate(1, 2), random.Random(1).randbytes(4)",
    "random.SystemRandom().random() < 1, random.randint(1, 6) <= 6",
    "textwrap.dedent('  a\\n  b'), textwrap.fill('a b c d e f g h', width=5)",
    "textwrap.shorten('hello world foo', width=10), textwrap.indent('a\\nb', '> ')",
    "unicodedata.normalize('NFKD', '\u00e9'), unicodedata.name('\u00e9'), unicodedata.category('a')",
    "unicodedata.numeric('\u00bd'), unicodedata.ucd_3_2_0.normalize('NFC', 'e\u0301')",
    "str(fractions.Fraction('3.1415').limit_denominator(100)), str(fractions.Fraction(0.5))",
    "str(fractions.Fraction(decimal.Decimal('0.25'))), round(fractions.Fraction(7, 2))",
    "math.isqrt(17), math.comb(5, 2), math.fsum([0.1] * 10), math.dist((0, 0), (3, 4))",
    "cmath.sqrt(-1), cmath.polar(1j)",
    "collections.Counter('banana').most_common(2), list(collections.Counter(a=2).elements())",
    "collections.OrderedDict([('b', 1), ('a', 2)]).popitem(last=False)",
    "collections.ChainMap({'a': 1}, {'b': 3})['b'], isinstance({}, collections.abc.Mapping)",
    "list(itertools.product('ab', repeat=2)), [(k, list(g)) for k, g in itertools.groupby('aab')]",
    "functools.reduce(operator.add, [1, 2, 3]), functools.lru_cache(maxsize=2)(abs)(-3)",
    "sorted([3, 1, 2], key=functools.cmp_to_key(lambda a, b: b - a)), functools.cache(abs)(-1)",
    "operator.itemgetter(1)('ab'), operator.call(len, 'ab')",
    "heapq.nlargest(2, [1, 5, 3]), list(heapq.merge([1, 3], [2])), bisect.bisect([1, 2], 1.5)",
    "string.capwords('hello world'), string.Template('$a and ${b}').substitute(a=1, b=2)",
    "'\u00e9'.encode('utf-8-sig'), '\u00e9'.encode('utf-16'), b'\\xe9'.decode('cp1252')",
    "'b\u00fccher.de'.encode('idna'), '\u00e9'.encode('iso-8859-15'), '\u00e9'.encode('unicode_escape')",
    "format(1234567.891, ',.2f'), format(1234, 'n'), '%s %.2f' % ('a', 2.5)",
]


def library_tour() -> str:
    """A method that runs LIBRARY_TOUR and returns [[index, error], ...] of the steps that failed."""
    steps = "\n".join(f"    try:\n        ({step})\n    except Exception as e:\n"
                      f"        failed.append([{i}, repr(e)])" for i, step in enumerate(LIBRARY_TOUR))
    return ("def tour(self):\n"
            "    import bisect, cmath, collections, collections.abc, datetime, decimal, fractions\n"
            "    import functools, heapq, itertools, json, json.decoder, math, operator, random, re\n"
            "    import statistics, string, textwrap, unicodedata\n"
            "    failed = []\n" + steps + "\n    return failed\n")

# methods that keep state: installed together, then called in order (selector, args, expected)
STATEFUL_METHODS = {
    "bump": m("""
        self.count = self.count + n if hasattr(self, 'count') else n
        self._p_changed = True
        return self.count""", "bump", "n=1"),
    "bump_aug": m("""
        self.count += n
        self._p_changed = True
        return self.count""", "bump_aug", "n=1"),
    "remember": m("""
        if not hasattr(self, 'notes'):
            self.notes = []
        self.notes.append(note)
        self._p_changed = True
        return len(self.notes)""", "remember", "note"),
    "score": m("""
        if not hasattr(self, 'scores'):
            self.scores = {}
        self.scores[who] = self.scores.get(who, 0) + points
        self._p_changed = True
        return self.scores[who]""", "score", "who, points"),
    "keep_types": m("""
        import datetime
        from decimal import Decimal
        self.kept = (1, {2, 3}, Decimal('1.5'), datetime.date(2024, 1, 2), frozenset('a'), b'raw')
        self._p_changed = True
        return True""", "keep_types", ""),
    "describe_types": m("""
        return [str(v) for v in self.kept]""", "describe_types", ""),
    "twice": m("return self.double(x) + self.double(x)", "twice", "x"),
    "double": m("return x * 2", "double", "x"),
    "forget": m("""
        del self.notes
        self._p_changed = True
        return hasattr(self, 'notes')""", "forget", ""),
}
STATEFUL_CALLS = [
    ("bump", [], {}, 1),
    ("bump", [], {"n": 4}, 5),
    ("bump_aug", [], {"n": 2}, 7),
    ("remember", ["milk"], {}, 1),
    ("remember", ["eggs"], {}, 2),
    ("score", ["ada", 3], {}, 3),
    ("score", ["ada", 4], {}, 7),
    ("keep_types", [], {}, True),
    ("describe_types", [], {}, ["1", str({2, 3}), "1.5", "2024-01-02", "frozenset({'a'})", "b'raw'"]),
    ("twice", [21], {}, 84),
]
