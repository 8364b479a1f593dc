"""Reporting: pure plotting functions (plots), example images saved with each evaluation
(examples), heat-map overlays for ``gonomaly score`` (overlays) and the self-contained HTML report
built from saved files alone (html: reading and the page; sections: what each section shows;
formatting: number formats; templates/: the Jinja templates of the page)."""
