"""engine: the trading venue's wire protocols, risk checks, matching core and journal."""
