"""``mgs run``: photos to a site (a trained, evaluated and exported city with one page that shows it), in stages."""
