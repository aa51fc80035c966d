from sparsehw.cli import main

raise SystemExit(main())
