"""The dashboard at `/` (issue 17): pages, sessions and figures; see views.py."""
