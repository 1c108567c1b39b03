from trio_gw.runtime.cli import main

raise SystemExit(main())
