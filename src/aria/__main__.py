from aria.cli import main

raise SystemExit(main())
