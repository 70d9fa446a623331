"""A generated demo catalog: a few hundred plausible products with brands, category paths, prices and ratings.

The shared Kaggle catalogs have titles and descriptions only, so a storefront demo over them shows no facets
or prices. This generator makes a small, seeded, clearly synthetic catalog (every product has
``attributes.generated = "true"``) whose text, brands and categories agree, so filters and facets mean something.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

# (category path, product noun, price range, adjectives, brands)
_KINDS = [
    (("Shoes", "Running"), "Running Shoes", (45, 160), ["Lightweight", "Cushioned", "Trail", "Breathable"],
     ["Stride", "Apex", "Nimbus"]),
    (("Shoes", "Boots"), "Hiking Boots", (70, 220), ["Waterproof", "Leather", "Insulated"], ["Apex", "Ridgeline"]),
    (("Shoes", "Sandals"), "Sandals", (15, 60), ["Slide", "Sport", "Leather"], ["Coastline", "Stride"]),
    (("Clothing", "Tops"), "Hoodie", (25, 80), ["Cotton", "Fleece", "Zip-Up", "Oversized"], ["Northwind", "Basecamp"]),
    (("Clothing", "Tops"), "T-Shirt", (8, 30), ["Cotton", "Graphic", "V-Neck", "Organic"], ["Basecamp", "Plainly"]),
    (("Clothing", "Outerwear"), "Rain Jacket", (40, 200), ["Packable", "Waterproof", "Insulated"],
     ["Northwind", "Ridgeline"]),
    (("Electronics", "Audio"), "Wireless Earbuds", (19, 249), ["Noise Cancelling", "Sport", "Compact"],
     ["Sonix", "Auralis"]),
    (("Electronics", "Audio"), "Bluetooth Speaker", (25, 300), ["Portable", "Waterproof", "Smart"],
     ["Sonix", "Boomly"]),
    (("Electronics", "TV"), "4K Television", (280, 1800), ["43 inch", "55 inch", "65 inch", "OLED"],
     ["Vistara", "Lumen"]),
    (("Electronics", "Computers"), "Laptop", (399, 2200), ["14 inch", "16 inch", "Gaming", "Ultrabook"],
     ["Techno", "Quanta"]),
    (("Home", "Kitchen"), "Coffee Maker", (25, 350), ["Drip", "Espresso", "Single Serve", "Programmable"],
     ["Brewster", "Kitchenly"]),
    (("Home", "Kitchen"), "Kitchen Faucet", (45, 320), ["Pull Down", "Touchless", "Brushed Nickel", "Matte Black"],
     ["Aqua", "Flowline"]),
    (("Home", "Furniture"), "Sofa", (350, 2400), ["Velvet", "Leather", "Sectional", "Sleeper"],
     ["Comfy", "Oakhaus"]),
    (("Home", "Furniture"), "Coffee Table", (60, 600), ["Oak", "Glass", "Walnut", "Lift-Top"], ["Oakhaus", "Comfy"]),
    (("Home", "Lighting"), "Desk Lamp", (15, 120), ["LED", "Dimmable", "Adjustable", "Touch"], ["Lumen", "Brightly"]),
    (("Outdoor", "Cooking"), "Gas Grill", (150, 900), ["3-Burner", "4-Burner", "Portable", "Stainless Steel"],
     ["Flame", "Ember"]),
    (("Outdoor", "Camping"), "Tent", (50, 500), ["2-Person", "4-Person", "Ultralight", "Family"],
     ["Basecamp", "Ridgeline"]),
    (("Sports", "Fitness"), "Yoga Mat", (15, 90), ["Non-Slip", "Extra Thick", "Travel", "Cork"], ["Zenfit", "Apex"]),
    (("Sports", "Cycling"), "Bike Helmet", (30, 200), ["MIPS", "Road", "Mountain", "Kids"], ["Velo", "Apex"]),
    (("Toys", "Building"), "Building Blocks Set", (10, 120), ["Classic", "City", "Space", "Castle"],
     ["Brickly", "Kidzo"]),
]
_COLOURS = ["Black", "White", "Red", "Blue", "Green", "Grey", "Navy", "Beige"]


def generate_catalog(n: int = 400, seed: int = 7) -> list[dict]:
    """``n`` generated products as catalog rows (the indexer's default field names).

    >>> rows = generate_catalog(3)
    >>> sorted(rows[0])[:4]
    ['attributes', 'brand', 'category', 'description']
    """
    if n <= 0:
        raise ValueError(f"n must be > 0, got {n}")
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        path, noun, (lo, hi), adjectives, brands = _KINDS[i % len(_KINDS)]
        adj, brand, colour = rng.choice(adjectives), rng.choice(brands), rng.choice(_COLOURS)
        price = round(rng.uniform(lo, hi)) - 0.01  # shelf prices end in .99
        rating = round(min(5.0, max(1.0, rng.gauss(4.1, 0.5))), 1)
        title = f"{brand} {adj} {noun} - {colour}"
        description = (f"The {brand} {adj.lower()} {noun.lower()} in {colour.lower()}. "
                       f"{rng.choice(['Built to last', 'Customer favourite', 'New this season', 'Great value'])}; "
                       f"ideal for {path[-1].lower()} {rng.choice(['at home', 'every day', 'on the go', 'gifts'])}.")
        rows.append({
            "id": f"demo{i + 1:04d}", "title": title, "description": description, "brand": brand,
            "category": " > ".join(path), "price": max(price, 0.99), "rating": rating,
            "review_count": rng.randint(0, 2500), "popularity": round(rng.random(), 3),
            "in_stock": rng.random() > 0.15, "attributes": {"colour": colour, "generated": "true"},
        })
    return rows


def write_catalog(path: Path, n: int = 400, seed: int = 7) -> Path:
    """Write :func:`generate_catalog` as JSONL to ``path`` and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in generate_catalog(n, seed):
            fh.write(json.dumps(row) + "\n")
    return path
