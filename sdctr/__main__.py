from sdctr.cli import main

raise SystemExit(main())
