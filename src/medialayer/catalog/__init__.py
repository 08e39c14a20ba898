"""The catalog: media rows and their fingerprints, API keys, decisions and jobs (SQLAlchemy);
import `medialayer.catalog.store` for the store itself."""
