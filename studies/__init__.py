"""The studies behind the defaults and the README's results, each a module run from the checkout
(``python -m studies.three_seeds``): what was tried, on which images, and what it showed."""
