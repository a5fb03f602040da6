from sdctr.main import main

raise SystemExit(main())
