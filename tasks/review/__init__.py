"""Human review of a build's images (`tv100 review`)."""
