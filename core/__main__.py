from crucible.cli import main

raise SystemExit(main())
