"""The API's query parameters as pydantic models: they validate a request and produce its OpenAPI parameters.

One model per endpoint (:class:`RequestModels`); the limits come from the app's :class:`Settings`, so
:func:`request_models` builds the models for one set of limits (cached) and ``size`` is documented with
``maximum: <max_size>`` and validated against that same number. api/openapi.py documents the endpoints from these
models (:func:`parameter_schemas`), so the document and the validation cannot drift.

A query string arrives as a MultiDict: ``brand``, ``category``, ``category_path`` and ``attr`` take every
occurrence and each may be a comma-separated list; any other parameter may be given once; a blank value of an
optional parameter means "absent" (except ``facets``: blank asks for none). Errors are ``ApiError`` naming the
parameter and its value (:func:`parse_params`): 400 when a value is malformed or over a limit, 422 when values are
valid alone but inconsistent together (``price_min > price_max``, ``page * size`` past ``max_depth``).

    >>> from werkzeug.datastructures import MultiDict
    >>> models = request_models(load_settings(environ={}))
    >>> parse_params(models.search, MultiDict([("q", "lamp"), ("brand", "a,b"), ("brand", "c")])).brand
    ('a', 'b', 'c')
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Any, Literal, Mapping, NamedTuple, TypeVar

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError,
                      model_validator)
from pydantic_core import PydanticCustomError, PydanticUseDefault
from werkzeug.datastructures import MultiDict

from shopsearch.events import Id
from shopsearch.indexer.fields import ATTRIBUTE_NAME
from shopsearch.indexer.records import MAX_CATEGORY_PATH_CHARS
from shopsearch.indexer.validate import RATING_SCALE, clean_category_level
from shopsearch.plugin.documents import ALL_ATTRIBUTES, DEFAULT_FACETS, FACET_FIELDS
from shopsearch.plugin.engine import SORTS, UNAVAILABLE_SORTS, Filters, unavailable_sort
from shopsearch.plugin.search_types import SearchRequest
from shopsearch.plugin.suggest import MAX_SUGGESTIONS
from shopsearch.reranker.pipeline import SearchContext
from shopsearch.reranker.recommendations import CONTEXTS
from shopsearch.settings import Settings, load_settings
from shopsearch.text import split_escaped
from shopsearch.ubi import UbiId

from .errors import ApiError, bad_parameter
from .hit_tokens import CLIENT_TOKEN, CLIENT_TOKEN_RECIPE

TRUE, FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")
PROFILE_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
MAX_LIST_VALUES = 50  # brand/category values per request
DEFAULT_SIZE = 10  # results (or completions) when size is not given, unless the limit is lower
INCONSISTENT, TOO_DEEP = "inconsistent_parameters", "page_too_deep"  # the 422 error codes
UNAVAILABLE = "unavailable_sort"  # a 400 that says why a sort a shopper may expect cannot be served


class _Repeatable:
    """Marks a list parameter that may be repeated (OpenAPI ``style: form, explode: true``)."""


REPEATABLE = _Repeatable()


def _blank_is_absent(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        raise PydanticUseDefault()
    return value


LIST_HELP = r"repeat or comma-separate; write a comma within a value as \, and a backslash as \\"
def _comma_list(value: Any) -> Any:
    """Every occurrence split at commas (:func:`~shopsearch.text.split_escaped`: ``\\,`` is a comma within a value,
    so a facet value such as "Sonix, Inc." selects itself), stripped, blanks dropped, duplicates removed (order
    kept)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        return value
    # NFC: as the indexer stores catalog text, so a value typed with a combining accent still matches
    out = [unicodedata.normalize("NFC", v.strip()) for raw in value for v in split_escaped(str(raw)) if v.strip()]
    return tuple(dict.fromkeys(out))


def _facet_list(value: Any) -> Any:
    return () if isinstance(value, str) and value.strip().lower() == "none" else _comma_list(value)


def _word_bool(value: Any) -> Any:
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE or word in FALSE:
            return word in TRUE
    return value  # anything else fails the strict bool below


def _available_sort(value: Any) -> Any:
    if isinstance(value, str) and value.strip() in UNAVAILABLE_SORTS:
        raise PydanticCustomError(UNAVAILABLE, unavailable_sort(value.strip()), {"parameter": "sort"})
    return value


BlankIsAbsent = BeforeValidator(_blank_is_absent)
OptionalId = Annotated[Id, BlankIsAbsent]  # ``user_id=`` from a template, for an anonymous shopper
ClientToken = Annotated[str, StringConstraints(pattern=CLIENT_TOKEN.pattern), BlankIsAbsent,
                        Field(examples=["Xf_JKq60FiO8apaZPyJTYg"])]
OptionalUbiId = Annotated[UbiId, BlankIsAbsent]
Names = Annotated[tuple[str, ...], Field(max_length=MAX_LIST_VALUES), BeforeValidator(_comma_list), REPEATABLE]
# Categories as the catalog names them match the levels the indexer stored (cleaned, a ">" written "›")
Categories = Annotated[tuple[Annotated[str, AfterValidator(clean_category_level)], ...],
                       Field(max_length=MAX_LIST_VALUES), BeforeValidator(_comma_list), REPEATABLE]
# The longest category path the indexer accepts (a longer one would not facet on OpenSearch): refused here, by name.
MAX_PATH_CHARS = MAX_CATEGORY_PATH_CHARS
Paths = Annotated[tuple[Annotated[str, StringConstraints(max_length=MAX_PATH_CHARS)], ...],
                  Field(max_length=MAX_LIST_VALUES), BeforeValidator(_comma_list), REPEATABLE]
Price = Annotated[float, Field(ge=0, allow_inf_nan=False), BlankIsAbsent]
Rating = Annotated[float, Field(ge=0, le=RATING_SCALE, allow_inf_nan=False), BlankIsAbsent]
QueryBool = Annotated[bool, Field(strict=True), BeforeValidator(_word_bool), BlankIsAbsent]
# A facet name: one of FACET_FIELDS, attr.<attribute> (a facet attribute of the field mapping) or attr.* (all).
FACET_PATTERN = (r"^(" + "|".join(re.escape(f) for f in FACET_FIELDS) + r"|attr\.\*|attr\."
                 + ATTRIBUTE_NAME.pattern.strip("^$") + r")$")
Facets = Annotated[tuple[Annotated[str, StringConstraints(pattern=FACET_PATTERN)], ...],
                   BeforeValidator(_facet_list)]
# An attribute filter: ``name:value`` (a product with any of an attribute's values passes; attributes AND).
AttributeFilters = Annotated[tuple[Annotated[str, StringConstraints(
    pattern=r"^" + ATTRIBUTE_NAME.pattern.strip("^$") + r":.*\S.*$", max_length=1100)], ...],
    Field(max_length=MAX_LIST_VALUES), BeforeValidator(_comma_list), REPEATABLE]
Profile = Annotated[str, Field(pattern=PROFILE_PATTERN), BlankIsAbsent]
Sort = Annotated[Literal[SORTS], BeforeValidator(_available_sort), BlankIsAbsent]  # type: ignore[valid-type]


class QueryParams(BaseModel):
    """Parameters of a query string; unknown ones are rejected (a typo would otherwise be silently ignored).

    Validates a MultiDict (``request.args``) as well as a plain mapping of values.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _from_query_string(cls, data: Any) -> Any:
        """A MultiDict's values: every occurrence of a repeatable parameter, exactly one of any other."""
        if not isinstance(data, MultiDict):
            return data
        out: dict[str, Any] = {}
        for name, values in data.lists():
            field = cls.model_fields.get(name)
            if field is not None and REPEATABLE in field.metadata:
                out[name] = values
            elif field is not None and len(values) > 1:
                raise PydanticCustomError("repeated", "{parameter} may be given once; got {count} values",
                                          {"parameter": name, "count": len(values)})
            else:
                out[name] = values[0]
        return out


class FilterParams(QueryParams):
    """The filters shared by /search and /products/<id>/similar."""

    brand: Names = Field((), description=f"Brands to keep ({LIST_HELP})")
    category: Categories = Field((), description=f"Categories to keep, any level of the path ({LIST_HELP})")
    category_path: Paths = Field((), description="Category paths to keep with everything under them, e.g. "
                                                 f"'Home > Furniture' ({LIST_HELP}; each at most "
                                                 f"{MAX_PATH_CHARS} characters)")
    attr: AttributeFilters = Field((), description="Attribute values to keep, as name:value, e.g. color:red "
                                                   f"({LIST_HELP}; values of one attribute OR, "
                                                   "attributes AND); the attributes the index facets",
                                   examples=["color:red"])
    price_min: Price = Field(None, description="Lowest price, inclusive (at most price_max, else 422)")
    price_max: Price = Field(None, description="Highest price, inclusive (a price facet bucket '25-50' links to "
                                               "price_min=25&price_max=50 and counts exactly what it selects)")
    in_stock: QueryBool = Field(None, description="Only products in (true) or out of (false) stock")
    rating_min: Rating = Field(None, description="Lowest average rating")

    @model_validator(mode="after")
    def _price_range(self) -> FilterParams:
        if self.price_min is not None and self.price_max is not None and self.price_min > self.price_max:
            raise PydanticCustomError(INCONSISTENT, f"price_min ({self.price_min:g}) must not exceed price_max "
                                                    f"({self.price_max:g})", {"parameter": "price_min"})
        return self

    def filters(self) -> Filters:
        """The engine's Filters record."""
        by_name: dict[str, list[str]] = {}
        for pair in self.attr:
            name, _, value = pair.partition(":")
            by_name.setdefault(name, []).append(value.strip())
        return Filters(brand=self.brand, category=self.category, price_min=self.price_min,
                       price_max=self.price_max, in_stock=self.in_stock, rating_min=self.rating_min,
                       category_path=self.category_path,
                       attributes=tuple((n, tuple(dict.fromkeys(v))) for n, v in sorted(by_name.items())))


class SearchParams(FilterParams):
    """/search without its limit-bound parameters (q, page, size: see :func:`request_models`)."""

    facets: Facets = Field(DEFAULT_FACETS, description=f"Comma list of facets to count "
                                                       f"({', '.join(FACET_FIELDS)}, attr.<attribute>, or "
                                                       f"{ALL_ATTRIBUTES}: every attribute facet of the index); "
                                                       "empty or 'none' for none. A category_lvlN value counts "
                                                       "products with that name at level N, while the category "
                                                       "filter keeps it at any level: to select exactly what a "
                                                       "facet counted, use category_path")
    profile: Profile = Field("default", description="Ranking profile name (unknown: 400); when given, it overrides "
                                                    "the online experiment the client is in")
    explain: QueryBool = Field(False, description="Add per-stage scores (and the conversion model's feature "
                                                  "contributions) to each hit")
    sort: Sort = Field("relevance", description="Order of the matching products over every page: relevance, "
                                                "price_asc, price_desc or rating (best first); products "
                                                "without the field come last")
    highlight: QueryBool = Field(False, description="Add each hit's title and description, HTML-escaped, with "
                                                    "<em> around the words the query matched (highlights)")
    user_id: OptionalId = Field(None, description="Shopper id, as sent with POST /events: the conversion stage uses "
                                                  "their brand/category affinity, with their client_token (or an "
                                                  "admin key) only; logged either way")
    client_token: ClientToken = Field(None, description="Proof that the caller may use user_id's history: "
                                                        f"{CLIENT_TOKEN_RECIPE}")
    session_id: OptionalId = Field(None, description="Session id, as sent with POST /events: affinity of an "
                                                     "anonymous shopper (when no user_id)")
    client_id: OptionalUbiId = Field(None, description="The UBI client (a browser, an app install), as sent with "
                                                       "UBI events; logged with the query and used for experiment "
                                                       "assignment (default: session_id)")
    simulated: QueryBool = Field(False, description="Marks simulated traffic (`shopsearch simulate-traffic`): the "
                                                   "query record says query_attributes.simulated = true")
    if TYPE_CHECKING:  # declared with their limits by request_models()
        q: str
        page: int
        size: int

    def request(self) -> SearchRequest:
        """The searcher's SearchRequest."""
        return SearchRequest(query=self.q, filters=self.filters(), page=self.page, size=self.size,
                             profile=self.profile, facets=self.facets, explain=self.explain, sort=self.sort,
                             highlight=self.highlight)

    def context(self, user_proven: bool = True) -> SearchContext:
        """Who is searching, for the conversion stage; ``user_id`` only when ``user_proven`` (else the session's
        affinity, as an anonymous shopper's)."""
        return SearchContext(user_id=self.user_id if user_proven else None, session_id=self.session_id)


class SimilarParams(FilterParams):
    """/products/<id>/similar (``size`` bound by :func:`request_models`)."""

    if TYPE_CHECKING:
        size: int


class SuggestParams(QueryParams):
    """/suggest (both parameters bound by :func:`request_models`)."""

    if TYPE_CHECKING:
        q: str
        size: int


class RecommendationParams(QueryParams):
    """/recommendations (``size`` bound by :func:`request_models`)."""

    client_id: OptionalId = Field(None, description="The shopper: their user_id, or the session_id (client id) "
                                                    "an anonymous shopper sends with POST /events; none: popular "
                                                    "products")
    client_token: ClientToken = Field(None, description="Proof that the caller may read client_id's history as a "
                                                        f"user_id: {CLIENT_TOKEN_RECIPE}. Without it (or an admin "
                                                        "key) client_id is read as a session id only")
    context: Annotated[Literal[CONTEXTS], BlankIsAbsent] = Field(  # type: ignore[valid-type]
        "home", description="Where the list is shown: home (for you, recently viewed), product (bought together "
                            "with product_id, for you) or cart (bought together with the shopper's cart)")
    product_id: OptionalId = Field(None, description="The product shown (required for context=product); left out "
                                                     "of every list")
    if TYPE_CHECKING:
        size: int

    @model_validator(mode="after")
    def _product_context(self) -> RecommendationParams:
        if self.context == "product" and self.product_id is None:
            raise PydanticCustomError(INCONSISTENT, "context=product needs a product_id",
                                      {"parameter": "product_id"})
        return self


class ProductPath(BaseModel):
    """The path parameter of /products/<product_id>."""

    product_id: Id = Field(description="Product id")


class RequestModels(NamedTuple):
    """The query-parameter model of each endpoint, for one set of limits."""

    search: type[SearchParams]
    similar: type[SimilarParams]
    suggest: type[SuggestParams]
    recommendations: type[RecommendationParams]


def request_models(cfg: Settings) -> RequestModels:
    """The request models whose limits are ``cfg``'s (``max_query_length``, ``max_size``, ``max_depth``).

    >>> parameter_schemas(request_models(load_settings(environ={})).search)["size"]
    {'default': 10, 'description': 'Results per page', 'maximum': 100, 'minimum': 1, 'type': 'integer'}
    """
    return _models(cfg.max_query_length, cfg.max_size, cfg.max_depth)


@lru_cache(maxsize=16)
def _models(max_query_length: int, max_size: int, max_depth: int) -> RequestModels:
    BrowseQuery = Annotated[str, StringConstraints(strip_whitespace=True, max_length=max_query_length)]
    Prefix = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=max_query_length)]
    Page = Annotated[int, Field(ge=1, le=max_depth), BlankIsAbsent]
    Size = Annotated[int, Field(ge=1, le=max_size), BlankIsAbsent]
    most_suggestions = min(max_size, MAX_SUGGESTIONS)
    SuggestSize = Annotated[int, Field(ge=1, le=most_suggestions), BlankIsAbsent]

    class _Query(QueryParams):
        q: BrowseQuery = Field("", description="Query text; blank browses: facets over the filtered products, and "
                                               "no hits unless sorted by a field")

    class Search(SearchParams, _Query):  # _Query last: q comes first in the document
        page: Page = Field(1, description=f"1-based page; page * size must be at most {max_depth} (else 422)")
        size: Size = Field(min(DEFAULT_SIZE, max_size), description="Results per page")

        @model_validator(mode="after")
        def _depth(self) -> Any:
            if self.page * self.size > max_depth:
                raise PydanticCustomError(TOO_DEEP, "page * size must be at most {most}; got {page} * {size} = "
                                                    "{depth}", {"parameter": "page", "most": max_depth,
                                                                "page": self.page, "size": self.size,
                                                                "depth": self.page * self.size})
            return self

    class Similar(SimilarParams):
        size: Size = Field(min(DEFAULT_SIZE, max_size), description="How many similar products")

    class Suggest(SuggestParams):
        q: Prefix = Field(description="The query typed so far")
        size: SuggestSize = Field(min(DEFAULT_SIZE, most_suggestions), description="Completions")

    class Recommendations(RecommendationParams):
        size: Size = Field(min(DEFAULT_SIZE, max_size), description="Products per list")

    return RequestModels(Search, Similar, Suggest, Recommendations)


M = TypeVar("M", bound=BaseModel)


def parse_params(model: type[M], values: Mapping[str, Any]) -> M:
    """Validate ``values`` (``request.args``, or the path parameters) with ``model``.

    Raises:
        ApiError: 400 naming the first bad parameter, its value and what it allows (an unknown parameter
            first); 422 for values inconsistent together.
    """
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise _api_error(exc, model) from None


def parameter_schemas(model: type[BaseModel]) -> dict[str, dict[str, Any]]:
    """Each parameter's JSON Schema, as the OpenAPI document shows it (no titles, no null defaults)."""
    props = model.model_json_schema()["properties"]
    return {name: {k: v for k, v in schema.items() if k != "title" and not (k == "default" and v is None)}
            for name, schema in props.items()}


def describe(schema: Mapping[str, Any]) -> str:
    """What a parameter's schema allows, in words.

    >>> describe({"type": "integer", "minimum": 1, "maximum": 100})
    'an integer between 1 and 100'
    """
    kind = schema.get("type")
    if "enum" in schema:
        return "one of " + ", ".join(str(v) for v in schema["enum"])
    if kind == "array":
        items = schema.get("items", {})
        text = "a comma-separated list" + (f" of {', '.join(items['enum'])}" if "enum" in items else
                                           f" of values matching {items['pattern']}" if "pattern" in items else "")
        text += f" of at most {schema['maxItems']} values" if "maxItems" in schema else ""
        return text + (f", each of at most {items['maxLength']} characters" if "maxLength" in items else "")
    if kind == "boolean":
        return "true or false (also " + ", ".join(f"{t}/{f}" for t, f in zip(TRUE[1:], FALSE[1:])) + ")"
    if kind == "string":
        text = "a non-blank string" if schema.get("minLength") else "a string"
        text += f" of at most {schema['maxLength']} characters" if "maxLength" in schema else ""
        return text + (f" matching {schema['pattern']}" if "pattern" in schema else "")
    text = "an integer" if kind == "integer" else "a number"
    lo, hi = schema.get("minimum"), schema.get("maximum")
    if lo is not None and hi is not None:
        return f"{text} between {lo:g} and {hi:g}"
    return text + (f" >= {lo:g}" if lo is not None else "") + (f" <= {hi:g}" if hi is not None else "")


def _api_error(exc: ValidationError, model: type[BaseModel]) -> ApiError:
    """The first error of ``exc`` as an ApiError naming the parameter (unknown parameters reported first)."""
    errors = sorted(exc.errors(include_url=False), key=lambda e: e["type"] != "extra_forbidden")
    err, ctx = errors[0], errors[0].get("ctx") or {}
    if err["type"] in (INCONSISTENT, TOO_DEEP):
        return ApiError(422, err["type"], err["msg"], ctx["parameter"])
    if not err["loc"]:  # a rule of the whole query string ("repeated")
        return bad_parameter(ctx.get("parameter"), err["msg"])
    name = str(err["loc"][0])
    if err["type"] == "extra_forbidden":
        return bad_parameter(name, f"unknown parameter {name!r}; allowed: {', '.join(model.model_fields) or 'none'}")
    if err["type"] == UNAVAILABLE:
        return bad_parameter(name, err["msg"])
    if err["type"] == "missing":
        return bad_parameter(name, f"{name} is required")
    value = err["input"]
    if err["type"] == "too_long":
        got = f"{ctx['actual_length']} values"
    elif err["type"] == "string_too_long":
        got = f"{len(value.strip())} characters"
    else:
        got = repr(value if not isinstance(value, str) or len(value) <= 60 else value[:60] + "...")
    return bad_parameter(name, f"{name} must be {describe(parameter_schemas(model)[name])}; got {got}")
