from xlt_search.cli import main

raise SystemExit(main())
