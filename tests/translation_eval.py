"""The translator's evaluation set: (utterance, command, selector, args) for an object with
the methods below.  "call" expects send_message with exactly these argument values;
"create" expects initiate_cognitive_cycle with one of the accepted selectors."""

METHODS = [
    {"selector": "greet", "signature": "greet(name)", "doc": "Greet someone by name."},
    {"selector": "factorial", "signature": "factorial(n)", "doc": "Return n factorial."},
    {"selector": "to_upper", "signature": "to_upper(text)", "doc": "Return the text in capitals."},
    {"selector": "add", "signature": "add(a, b)", "doc": "Add two numbers."},
    {"selector": "is_even", "signature": "is_even(n)", "doc": "Tell whether n is even."},
    {"selector": "repeat_text", "signature": "repeat_text(text, times)", "doc": "Repeat a text n times."},
]

CASES = [
    # existing capabilities: send_message with the arguments extracted
    ("Greet me as Architect", "call", "greet", ["Architect"]),
    ("say hello to Bob", "call", "greet", ["Bob"]),
    ("greet Ada Lovelace", "call", "greet", ["Ada Lovelace"]),
    ("what is the factorial of 6?", "call", "factorial", [6]),
    ("factorial of 10 please", "call", "factorial", [10]),
    ("compute 7!", "call", "factorial", [7]),
    ("make 'hello there' uppercase", "call", "to_upper", ["hello there"]),
    ("shout bat os in capitals", "call", "to_upper", ["bat os"]),
    ("add 2 and 3", "call", "add", [2, 3]),
    ("what's 12.5 plus 7?", "call", "add", [12.5, 7]),
    ("is 14 even?", "call", "is_even", [14]),
    ("check whether 7 is even", "call", "is_even", [7]),
    ("repeat 'ha' 3 times", "call", "repeat_text", ["ha", 3]),
    ("grret me as Archtect", "call", "greet", ["Archtect"]),
    ("factoral of five", "call", "factorial", [5]),
    # new capabilities: a cognitive cycle with a snake_case selector
    ("write a method that reverses a word", "create", ("reverse_word", "reverse", "reverse_text", "reverse_string"), None),
    ("Can you count the vowels in a sentence?", "create", ("count_vowels",), None),
    ("teach it to compute the area of a circle from its radius", "create",
     ("area_of_circle", "circle_area", "compute_area", "calculate_area", "compute_circle_area",
      "calculate_circle_area", "area"), None),
    ("Create a method to check if a number is prime", "create", ("is_prime", "check_prime"), None),
    ("make a method that returns the length of a text", "create",
     ("length", "text_length", "get_length", "length_of_text", "get_text_length"), None),
    ("wrte a methd that counts words in a txt", "create", ("count_words", "word_count"), None),
    ("I need a way to convert celsius to fahrenheit", "create",
     ("celsius_to_fahrenheit", "convert_celsius_to_fahrenheit", "c_to_f"), None),
    ("new skill: find the maximum of a list of numbers", "create",
     ("max_of_list", "find_max", "find_maximum", "maximum", "max_number", "get_max", "max_in_list"), None),
    ("please learn to tell whether a year is a leap year", "create",
     ("is_leap_year", "leap_year", "check_leap_year"), None),
    ("remember things I tell you in a list", "create",
     ("remember", "remember_item", "remember_things", "add_item", "add_to_list", "store_item", "remember_thing"), None),
    ("build a method that sorts a list of names alphabetically", "create",
     ("sort_names", "sort_alphabetically", "sort_list", "sort_names_alphabetically"), None),
]
