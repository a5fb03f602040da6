from sdctr.main import entry

entry()
