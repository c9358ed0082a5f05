"""chargelift-certs: the small certificate authority of a chargelift installation."""
