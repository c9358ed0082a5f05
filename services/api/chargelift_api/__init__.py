"""chargelift read API: state, history, charging sessions, energy and cost, over the database."""
