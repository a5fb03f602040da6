"""The command line: flags as Docker spells them, verbs by noun, output as Docker prints it.
No side effects of its own: a verb turns parsed arguments into run options and hands them to
runtime/ and image/. Imports anything; only sdctr.main imports it."""
