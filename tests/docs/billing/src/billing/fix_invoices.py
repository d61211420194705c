"""python -m billing.fix_invoices [--dry-run]: the kind of one-off command exec.yml runs."""

import sys

if __name__ == "__main__":
    print("fix_invoices: 0 invoices to fix" + (" (dry run)" if "--dry-run" in sys.argv else ""))
