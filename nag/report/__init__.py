"""What people read: plain-text terminal tables (:mod:`nag.report.tables`) and pictures of
architectures and metric distributions (:mod:`nag.report.plots`, matplotlib and networkx,
imported only when drawing)."""
