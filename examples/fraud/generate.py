"""A seeded synthetic card-transaction generator for the fraud example.

The world: card holders who live somewhere (their home is the `user_profile`
table), merchants with a category, countries. Normal spending: a user buys
mostly from a handful of favourite merchants, near home, amounts around their
own mean; now and then a second purchase follows within minutes, and a few
transactions happen abroad (travel). Fraud comes in episodes, each labelled
is_fraud=1, of three kinds a model can learn from the fraud_detection features:

- burst: 5-15 transactions within a few minutes, far from home, at as many
  distinct merchants (user counts over 1m/5m, distinct merchants, distance);
- big spend: 1-3 large transactions (4-15x the user's mean) far from home
  (amount vs the user's daily mean, distance);
- local: a stolen card used near home, 3-8 transactions of 2-8x the mean at
  distinct merchants within minutes (counts, amounts; no distance signal).

Every function is deterministic for a given seed. Timestamps are epoch
milliseconds (int64), which tally accepts everywhere.
"""
from dataclasses import dataclass

import numpy as np
import pandas as pd

# code, centre lat, centre long, spread (degrees), share of card holders
COUNTRIES = [
    ("US", 39.8, -98.6, 8.0, 0.34), ("GB", 52.5, -1.5, 1.5, 0.12), ("FR", 46.6, 2.4, 2.5, 0.12),
    ("DE", 51.1, 10.4, 2.5, 0.12), ("BR", -14.2, -51.9, 6.0, 0.09), ("IN", 21.0, 78.0, 6.0, 0.10),
    ("JP", 36.2, 138.3, 2.0, 0.07), ("NG", 9.1, 8.7, 3.0, 0.04),
]
# category, amount factor vs the user's mean
CATEGORIES = [
    ("grocery_pos", 1.0), ("gas_transport", 0.8), ("shopping_net", 1.5), ("shopping_pos", 1.3),
    ("food_dining", 0.7), ("entertainment", 1.0), ("travel", 2.5), ("health_fitness", 0.9),
    ("misc_net", 1.0), ("home", 1.6),
]
FAVOURITES = 6  # favourite merchants per user


@dataclass
class World:
    """The card holders and merchants that every stream of one seed shares."""

    users: pd.DataFrame  # user_id, country (index into COUNTRIES), home_lat, home_long, spend_mean, activity
    merchants: np.ndarray  # merchant names
    merchant_category: np.ndarray  # index into CATEGORIES
    merchant_pop: np.ndarray  # popularity, sums to 1
    favourites: np.ndarray  # (users, FAVOURITES) merchant indexes

    def profile(self):
        """The user_profile table: user_id, home_lat, home_long."""
        return self.users[["user_id", "home_lat", "home_long"]].copy()


def make_world(n_users, seed, n_merchants=None):
    rng = np.random.default_rng([seed, 0])
    n_merchants = n_merchants or max(200, n_users // 10)
    share = np.array([c[4] for c in COUNTRIES])
    country = rng.choice(len(COUNTRIES), size=n_users, p=share / share.sum())
    centre = np.array([[c[1], c[2], c[3]] for c in COUNTRIES])[country]
    users = pd.DataFrame({
        "user_id": [f"user_{i:06d}" for i in range(n_users)],
        "country": country,
        "home_lat": np.round(np.clip(centre[:, 0] + rng.normal(0, 1, n_users) * centre[:, 2] / 2, -60, 70), 5),
        "home_long": np.round(centre[:, 1] + rng.normal(0, 1, n_users) * centre[:, 2] / 2, 5),
        "spend_mean": np.round(np.exp(rng.normal(np.log(40), 0.6, n_users)), 2),
        # how often a user pays: log-normal, a few users pay ten times as often as most
        "activity": rng.lognormal(0, 0.8, n_users),
    })
    pop = 1.0 / np.arange(1, n_merchants + 1) ** 0.8
    pop = rng.permutation(pop / pop.sum())
    return World(
        users=users,
        merchants=np.array([f"merchant_{i:04d}" for i in range(n_merchants)]),
        merchant_category=rng.integers(0, len(CATEGORIES), n_merchants),
        merchant_pop=pop,
        favourites=rng.choice(n_merchants, size=(n_users, FAVOURITES), p=pop),
    )


def transactions(world, start_ms, end_ms, rate, fraud_share, seed, min_episodes=0, max_episode_ms=None):
    """Transactions between start_ms and end_ms (epoch ms, end exclusive).

    rate is normal transactions a second across all users; fraud_share the
    fraction of all transactions that are fraud (in episodes, at least
    min_episodes); max_episode_ms caps an episode's length (a short live
    stream compresses its episodes). Returns a DataFrame sorted by timestamp
    with the transactions source's columns: user_id, merchant, category, amt,
    country, lat, long, is_fraud, timestamp.
    """
    rng = np.random.default_rng([seed, 1])
    span = end_ms - start_ms
    parts = [_normal(world, rng, start_ms, end_ms, int(rate * span / 1000))]
    fraud_target = fraud_share * len(parts[0]) / (1 - fraud_share)
    n_fraud, episodes = 0, 0
    while n_fraud < fraud_target or episodes < min_episodes:
        ep = _episode(world, rng, start_ms, end_ms, max_episode_ms)
        parts.append(ep)
        n_fraud += len(ep)
        episodes += 1
    df = pd.concat(parts, ignore_index=True)
    df = df.sort_values("timestamp", kind="stable", ignore_index=True)
    return df


def _normal(world, rng, start_ms, end_ms, n):
    u = world.users
    p = u["activity"].to_numpy()
    user = rng.choice(len(u), size=n, p=p / p.sum())
    ts = rng.integers(start_ms, end_ms, n)
    # a few purchases bring a second (and third) one within minutes: a mall, a trip
    k = rng.random(n) < 0.04
    extra_user = np.repeat(user[k], 2)
    extra_ts = np.repeat(ts[k], 2) + rng.integers(20_000, 600_000, extra_user.size)
    keep = (rng.random(extra_user.size) < 0.6) & (extra_ts < end_ms)
    user = np.concatenate([user, extra_user[keep]])
    ts = np.concatenate([ts, extra_ts[keep]])
    n = user.size

    fav = rng.random(n) < 0.75
    merchant = np.where(fav, world.favourites[user, rng.integers(0, FAVOURITES, n)],
                        rng.choice(world.merchants.size, size=n, p=world.merchant_pop))
    cat = world.merchant_category[merchant]
    factor = np.array([c[1] for c in CATEGORIES])[cat]
    amt = u["spend_mean"].to_numpy()[user] * factor * rng.lognormal(0, 0.6, n)
    # and 1% are big-ticket purchases: a laptop, a flight
    big = rng.random(n) < 0.01
    amt[big] *= rng.uniform(3, 12, big.sum())

    country = u["country"].to_numpy()[user].copy()
    lat = u["home_lat"].to_numpy()[user] + rng.normal(0, 0.03, n)
    long = u["home_long"].to_numpy()[user] + rng.normal(0, 0.03, n)
    # travellers: 3% of purchases happen in another country, legitimately
    travel = rng.random(n) < 0.03
    dest = rng.integers(0, len(COUNTRIES), travel.sum())
    centre = np.array([[c[1], c[2], c[3]] for c in COUNTRIES])[dest]
    country[travel] = dest
    lat[travel] = centre[:, 0] + rng.normal(0, 1, dest.size) * centre[:, 2] / 3
    long[travel] = centre[:, 1] + rng.normal(0, 1, dest.size) * centre[:, 2] / 3
    return _frame(world, user, merchant, amt, country, lat, long, ts, 0)


def _episode(world, rng, start_ms, end_ms, max_episode_ms):
    u = world.users
    user = int(rng.integers(0, len(u)))
    mean = u["spend_mean"].iat[user]
    kind = rng.choice(["burst", "big_spend", "local"], p=[0.5, 0.3, 0.2])
    if kind == "burst":
        n, length = int(rng.integers(4, 13)), rng.integers(40_000, 300_000)
        # card testing: small amounts first, then what the card will take
        amt = mean * np.sort(rng.lognormal(0, 1.0, n))
    elif kind == "big_spend":
        n, length = int(rng.integers(1, 4)), rng.integers(30_000, 600_000)
        amt = mean * rng.uniform(4, 15, n)
    else:
        n, length = int(rng.integers(3, 9)), rng.integers(60_000, 360_000)
        amt = mean * rng.uniform(2, 8, n)
    if max_episode_ms:
        length = min(length, max_episode_ms)
    length = min(length, end_ms - start_ms - 1)
    t0 = rng.integers(start_ms, end_ms - length)
    ts = np.sort(t0 + rng.integers(0, length + 1, n))
    merchant = rng.choice(world.merchants.size, size=n, replace=False, p=world.merchant_pop)
    if kind == "local" or rng.random() < 0.3:
        # the home country: a stolen card used in town, or a cloned one in another city
        spread = 0.2 if kind == "local" else 3.0
        country = np.full(n, u["country"].iat[user])
        lat = u["home_lat"].iat[user] + rng.normal(0, spread) + rng.normal(0, 0.02, n)
        long = u["home_long"].iat[user] + rng.normal(0, spread) + rng.normal(0, 0.02, n)
    else:
        home = u["country"].iat[user]
        c = int(rng.choice([i for i in range(len(COUNTRIES)) if i != home]))
        code, clat, clong, spread, _ = COUNTRIES[c]
        country = np.full(n, c)
        lat = clat + rng.normal(0, spread / 3) + rng.normal(0, 0.02, n)
        long = clong + rng.normal(0, spread / 3) + rng.normal(0, 0.02, n)
    return _frame(world, np.full(n, user), merchant, amt, country, lat, long, ts, 1)


def _frame(world, user, merchant, amt, country, lat, long, ts, is_fraud):
    codes = np.array([c[0] for c in COUNTRIES])
    cats = np.array([c[0] for c in CATEGORIES])
    return pd.DataFrame({
        "user_id": world.users["user_id"].to_numpy()[user],
        "merchant": world.merchants[merchant],
        "category": cats[world.merchant_category[merchant]],
        "amt": np.round(np.maximum(amt, 1.0), 2),
        "country": codes[country],
        "lat": np.round(lat, 5),
        "long": np.round(long, 5),
        "is_fraud": np.full(len(user), is_fraud, dtype=np.int64),
        "timestamp": np.asarray(ts, dtype=np.int64),
    })


if __name__ == "__main__":
    import time
    w = make_world(5000, seed=7)
    now = int(time.time() * 1000)
    df = transactions(w, now - 3_600_000, now, rate=5, fraud_share=0.01, seed=7)
    print(df.head(10).to_string())
    print(f"{len(df)} transactions, {df.is_fraud.sum()} fraud ({df.is_fraud.mean():.2%}), {df.user_id.nunique()} users")
