"""The policy data of the language layer: which modules, names and attributes
bot code may use.

Kept apart from the checker and the runtime so that both read one table: the
`ast` check refuses `sys.modules` statically with the same allowlist the
`sys` facade uses at run time. Pure data plus two tiny predicates; importing
this module costs nothing measurable.

Why facades and not trust: 19 of the 29 modules the seed allowed reach `os`,
`sys` or `builtins` by attribute chains without a single underscore name
(`typing.sys`, `warnings.sys`, `json.decoder.re.sys`...). A facade is a fresh
module object holding only the attributes listed here; a submodule listed here
is itself a facade.
"""

CORE = frozenset(
    "json math random datetime time re base64 hashlib hmac secrets typing copy".split()
)
UTILITIES = frozenset(
    "collections itertools functools io traceback sys email warnings weakref "
    "string decimal fractions statistics".split()
)
NETWORK = frozenset(
    "socket ssl http urllib urllib3 requests certifi charset_normalizer idna".split()
)
TOP_LEVEL = CORE | UTILITIES | NETWORK

# Builtins a bot may not name at all. Most are also absent from the builtins
# the bot gets, so even a name that slipped through would be a NameError.
# (`getattr` and `hasattr` are allowed in one form only; see below.)
FORBIDDEN_NAMES = frozenset(
    "eval exec compile open globals locals vars breakpoint help input "
    "setattr delattr memoryview exit quit copyright credits license".split()
)

# Builtins that read an attribute by a name given as an argument. Allowed
# only as a direct call with a literal name, `getattr(obj, "name")`,
# `getattr(obj, "name", default)` or `hasattr(obj, "name")`, where the name
# follows the attribute rules; the checker rewrites such calls to the
# harness's own helpers, and neither builtin is in the bot's builtins.
NAME_READERS = frozenset(["getattr", "hasattr"])

# Attributes without a leading underscore that still lead to frames, code
# objects and their globals: generator, coroutine, traceback and frame
# internals.
FORBIDDEN_ATTRS = frozenset(
    """gi_frame gi_code gi_yieldfrom gi_running gi_suspended
    cr_frame cr_code cr_await cr_origin cr_running cr_suspended
    ag_frame ag_code ag_await ag_running
    tb_frame tb_next tb_lasti tb_lineno
    f_globals f_locals f_builtins f_back f_code f_trace f_trace_lines
    f_trace_opcodes f_lasti f_lineno
    cell_contents func_globals func_code im_func im_self""".split()
)

# `C.mro()` walks up to base classes the bot never named, among them the
# class factories of the library (`enum.Enum("E", {...})` builds a class
# with any special method from a dict, as `type()` would).
CLASS_INTERNALS = frozenset(["mro"])

# Attributes every read of which in bot code goes through a harness guard
# (see hx_runtime's format guard): `x.format` and `x.format_map` are
# rewritten by the checker. A `match` keyword pattern `case str(format=f)`
# reads the attribute directly, so these names are refused there.
GUARDED_ATTRS = frozenset(["format", "format_map"])

# Special methods a bot class may define with `def` in a class statement.
# Each one runs only when bot code, or library code working for it, uses the
# object in an ordinary way, and it receives nothing but its operands (its
# own object, the other operand, an index or key, a format spec):
#
# - construction and text: `__init__ __repr__ __str__ __format__ __bytes__`
# - comparison and hashing: `__eq__ __ne__ __lt__ __le__ __gt__ __ge__
#   __hash__ __bool__`
# - containers and iteration: `__len__ __length_hint__ __iter__ __next__
#   __reversed__ __contains__ __getitem__ __setitem__ __delitem__
#   __missing__`
# - context managers and calls: `__enter__ __exit__ __call__` (`__exit__`
#   receives the exception in flight: like every bot function it scrubs its
#   arguments first, see hx_check)
# - arithmetic, every operator in its forward, reflected (`__r*__`) and
#   in-place (`__i*__`) form, the unary operators and the numeric
#   conversions.
#
# Left out, because they hook the machinery rather than an operation:
# attribute access (`__getattr__ __getattribute__ __setattr__ __delattr__
# __dir__`: a bot subclass of a library class would see every private value
# the library stores on `self`), descriptors (`__get__ __set__ __delete__
# __set_name__`), class creation and checks (`__new__ __init_subclass__
# __class_getitem__ __mro_entries__ __prepare__ __instancecheck__
# __subclasscheck__ __subclasshook__`: they receive classes and objects that
# library code checks), object lifetime (`__del__`, which could run after the
# hook), the copy and pickle protocols (`__reduce__ __reduce_ex__
# __getstate__ __setstate__ __copy__ __deepcopy__ __getnewargs__...`: they
# hand over an object's whole state), and the async protocols (no event
# loop runs in a hook).
_OPERATORS = """add sub mul matmul truediv floordiv mod divmod pow lshift rshift
and xor or""".split()
SPECIAL_METHODS = frozenset(
    """__init__ __repr__ __str__ __format__ __bytes__ __eq__ __ne__ __lt__
    __le__ __gt__ __ge__ __hash__ __bool__ __len__ __length_hint__ __iter__
    __next__ __reversed__ __contains__ __getitem__ __setitem__ __delitem__
    __missing__ __enter__ __exit__ __call__ __neg__ __pos__ __abs__
    __invert__ __int__ __float__ __complex__ __index__ __round__ __trunc__
    __floor__ __ceil__""".split()
    + [f"__{p}{op}__" for op in _OPERATORS for p in ("", "r", "i") if (p, op) != ("i", "divmod")]
)

# Underscore names that are harmless and idiomatic: `for _ in range(3)`,
# `if __name__ == "__main__"`, `super().__init__(...)`, `type(x).__name__`.
# They may be read, never assigned: `x.__name__ = ...` is refused.
ALLOWED_UNDERSCORE_NAMES = frozenset(["_", "__name__"])
ALLOWED_UNDERSCORE_ATTRS = frozenset(["__init__", "__name__", "__doc__"])

# The builtins whose class pattern matches the subject itself: `case
# int(n)` binds the subject, where for any other class `case C(n)` reads
# the attribute named by `C.__match_args__[0]`, a name held as data.
MATCH_SELF_BUILTINS = frozenset(
    "bool bytearray bytes dict float frozenset int list set str tuple".split()
)

# Deeper than this, the source is refused (Python itself refuses more than
# 200 nested parentheses); the checker walks with an explicit stack, so this
# bounds the compiler's recursion, not its own.
MAX_NESTING = 200

# Keys a dict given to `type(name, bases, dict)` may hold besides ordinary
# names: the same rule as names in a class statement, without special
# methods (those need a class statement, where the checker sees them).
CLASS_DICT_DUNDERS = frozenset(["__doc__", "__module__", "__qualname__"])


def name_refused(name):
    """Why the identifier `name` may not appear in bot code, or None."""
    if name.startswith("_") and name not in ALLOWED_UNDERSCORE_NAMES:
        return f"Name '{name}' is not allowed (names starting with '_' are reserved)"
    if name in FORBIDDEN_NAMES:
        return f"'{name}' is not allowed in bot code"
    return None


def attr_refused(attr):
    """Why `obj.attr` may not appear in bot code, or None."""
    if attr.startswith("_") and attr not in ALLOWED_UNDERSCORE_ATTRS:
        return f"Attribute '{attr}' is not allowed (names starting with '_' are reserved)"
    if attr in FORBIDDEN_ATTRS or attr.startswith("co_"):
        return f"Attribute '{attr}' is not allowed (frame and code internals)"
    if attr in CLASS_INTERNALS:
        return f"Attribute '{attr}' is not allowed (class internals: it reaches base classes)"
    return None


def attr_store_refused(attr):
    """Why `obj.attr = ...` (or `del obj.attr`) may not appear, or None."""
    if attr.startswith("_"):
        return f"Attribute '{attr}' cannot be assigned (names starting with '_' are reserved)"
    return attr_refused(attr)


def pattern_attr_refused(attr):
    """Why `case C(attr=...)` may not appear, or None: the pattern reads
    `subject.attr` directly, past the guards attribute reads get."""
    why = attr_refused(attr)
    if why:
        return why
    if attr in GUARDED_ATTRS:
        return (
            f"Class pattern keyword '{attr}' is not allowed (it would read the "
            f"unguarded str.{attr}; call x.{attr}(...) instead)"
        )
    return None


def class_dict_key_refused(key):
    """Why `type(name, bases, {key: ...})` is refused, or None."""
    if type(key) is not str:
        return f"type(): a class attribute name must be a string, not {type(key).__name__}"
    if key in CLASS_DICT_DUNDERS:
        return None
    if key.startswith("_") and key not in ALLOWED_UNDERSCORE_NAMES:
        return (
            f"type(): the class attribute '{key}' is not allowed (names starting "
            "with '_', special methods included, need a class statement)"
        )
    return None


def module_refused(name, network):
    """Why `import name` is refused, or None. `name` may be dotted."""
    top = name.partition(".")[0]
    if top not in TOP_LEVEL:
        return f"Import of '{name}' is not allowed"
    if name not in FACADES:
        return f"Import of '{name}' is not allowed (only {top}'s listed submodules are)"
    if top in NETWORK and not network:
        return (
            f"Import of '{name}' needs network access, "
            "and this bot was not given allow_network"
        )
    return None


def _names(text):
    return tuple(text.split())


# Module name -> the attribute names its facade exposes. A name that is also a
# key here (`email` + `utils` -> `email.utils`) is exposed as that submodule's
# facade. Names a given Python version lacks are skipped.
FACADES = {
    # -- core
    "json": _names("dumps loads dump load JSONEncoder JSONDecoder JSONDecodeError"),
    "math": _names(
        """acos acosh asin asinh atan atan2 atanh cbrt ceil comb copysign cos cosh
        degrees dist e erf erfc exp exp2 expm1 fabs factorial floor fmod frexp fsum
        gamma gcd hypot inf isclose isfinite isinf isnan isqrt lcm ldexp lgamma log
        log10 log1p log2 modf nan nextafter perm pi pow prod radians remainder sin
        sinh sqrt tan tanh tau trunc ulp sumprod"""
    ),
    "random": _names(
        """Random SystemRandom betavariate binomialvariate choice choices
        expovariate gammavariate gauss getrandbits getstate lognormvariate
        normalvariate paretovariate randbytes randint random randrange sample seed
        setstate shuffle triangular uniform vonmisesvariate weibullvariate"""
    ),
    "datetime": _names("date datetime time timedelta timezone tzinfo MINYEAR MAXYEAR UTC"),
    "time": _names(
        """altzone asctime ctime daylight get_clock_info gmtime localtime mktime
        monotonic monotonic_ns perf_counter perf_counter_ns process_time
        process_time_ns sleep strftime strptime struct_time thread_time
        thread_time_ns time time_ns timezone tzname"""
    ),
    "re": _names(
        """compile match fullmatch search sub subn split findall finditer escape
        purge error Pattern Match RegexFlag A ASCII I IGNORECASE L LOCALE M
        MULTILINE S DOTALL X VERBOSE U UNICODE NOFLAG"""
    ),
    "base64": _names(
        """b64encode b64decode standard_b64encode standard_b64decode
        urlsafe_b64encode urlsafe_b64decode b32encode b32decode b32hexencode
        b32hexdecode b16encode b16decode b85encode b85decode a85encode a85decode
        encodebytes decodebytes"""
    ),
    "hashlib": _names(
        """md5 sha1 sha224 sha256 sha384 sha512 blake2b blake2s sha3_224 sha3_256
        sha3_384 sha3_512 shake_128 shake_256 new algorithms_guaranteed
        algorithms_available pbkdf2_hmac scrypt file_digest"""
    ),
    "hmac": _names("new compare_digest digest HMAC"),
    "secrets": _names(
        """token_bytes token_hex token_urlsafe choice randbelow randbits
        compare_digest SystemRandom DEFAULT_ENTROPY"""
    ),
    # Not: get_type_hints, ForwardRef (they eval strings with the real
    # builtins), get_overloads, the deprecated `typing.io`/`typing.re`.
    "typing": _names(
        """Annotated Any Callable ClassVar Concatenate Final
        Generic Literal LiteralString Never NoReturn NotRequired Optional
        ParamSpec ParamSpecArgs ParamSpecKwargs Protocol Required Self TypeAlias
        TypeGuard TypeVar TypeVarTuple Union Unpack AbstractSet ByteString
        Container ContextManager Hashable ItemsView Iterable Iterator KeysView
        Mapping MappingView MutableMapping MutableSequence MutableSet Sequence
        Sized ValuesView Awaitable AsyncIterator AsyncIterable Coroutine
        Collection AsyncGenerator AsyncContextManager Reversible SupportsAbs
        SupportsBytes SupportsComplex SupportsFloat SupportsIndex SupportsInt
        SupportsRound ChainMap Counter Deque Dict DefaultDict List OrderedDict
        Set FrozenSet NamedTuple TypedDict Generator BinaryIO IO TextIO AnyStr
        assert_never assert_type cast final get_args get_origin is_typeddict
        NewType no_type_check no_type_check_decorator overload
        runtime_checkable Text TYPE_CHECKING reveal_type dataclass_transform
        Tuple Type"""
    ),
    "copy": _names("copy deepcopy Error error"),
    # -- utilities
    "collections": _names(
        """deque defaultdict namedtuple OrderedDict Counter ChainMap UserDict
        UserList UserString abc"""
    ),
    "collections.abc": _names(
        """Awaitable Coroutine AsyncIterable AsyncIterator AsyncGenerator Hashable
        Iterable Iterator Generator Reversible Sized Container Callable
        Collection Set MutableSet Mapping MutableMapping MappingView KeysView
        ItemsView ValuesView Sequence MutableSequence ByteString Buffer"""
    ),
    "itertools": _names(
        """accumulate batched chain combinations combinations_with_replacement
        compress count cycle dropwhile filterfalse groupby islice pairwise
        permutations product repeat starmap takewhile tee zip_longest"""
    ),
    # Not: update_wrapper (its `assigned`/`updated` arguments read any
    # attribute by name), singledispatch (evaluates string annotations).
    # `wraps` is replaced by a version without those arguments.
    "functools": _names(
        """reduce partial partialmethod lru_cache cache cached_property wraps
        total_ordering cmp_to_key"""
    ),
    "io": _names("StringIO BytesIO SEEK_SET SEEK_CUR SEEK_END UnsupportedOperation"),
    # Formatting only: nothing that walks live stacks or frames.
    "traceback": _names(
        "format_exc print_exc format_exception format_exception_only print_exception"
    ),
    "sys": _names(
        """version version_info maxsize maxunicode platform byteorder float_info
        int_info hexversion implementation getsizeof getrecursionlimit
        stdout stderr"""
    ),
    "email": _names(
        """message_from_string message_from_bytes message charset contentmanager
        encoders errors generator header headerregistry iterators mime parser
        policy utils base64mime quoprimime feedparser"""
    ),
    "email.message": _names("Message EmailMessage MIMEPart"),
    "email.charset": _names("Charset add_alias add_charset add_codec QP BASE64 SHORTEST"),
    "email.contentmanager": _names("ContentManager raw_data_manager"),
    "email.encoders": _names("encode_7or8bit encode_base64 encode_noop encode_quopri"),
    "email.errors": _names(
        """MessageError MessageParseError HeaderParseError BoundaryError
        MultipartConversionError CharsetError MessageDefect NoBoundaryInMultipartDefect
        StartBoundaryNotFoundDefect CloseBoundaryNotFoundDefect
        FirstHeaderLineIsContinuationDefect MisplacedEnvelopeHeaderDefect
        MissingHeaderBodySeparatorDefect MalformedHeaderDefect
        MultipartInvariantViolationDefect InvalidMultipartContentTransferEncodingDefect
        UndecodableBytesDefect InvalidBase64PaddingDefect
        InvalidBase64CharactersDefect InvalidBase64LengthDefect HeaderDefect
        InvalidHeaderDefect HeaderMissingRequiredValue NonPrintableDefect
        ObsoleteHeaderDefect NonASCIILocalPartDefect InvalidDateDefect"""
    ),
    "email.generator": _names("Generator BytesGenerator DecodedGenerator"),
    "email.header": _names("Header decode_header make_header"),
    "email.headerregistry": _names(
        """Address Group BaseHeader UnstructuredHeader UniqueUnstructuredHeader
        DateHeader UniqueDateHeader AddressHeader UniqueAddressHeader
        SingleAddressHeader UniqueSingleAddressHeader MIMEVersionHeader
        ParameterizedMIMEHeader ContentTypeHeader ContentDispositionHeader
        ContentTransferEncodingHeader MessageIDHeader HeaderRegistry"""
    ),
    "email.iterators": _names("body_line_iterator typed_subpart_iterator walk"),
    "email.mime": _names("application base multipart nonmultipart text message"),
    "email.mime.application": _names("MIMEApplication"),
    "email.mime.base": _names("MIMEBase"),
    "email.mime.multipart": _names("MIMEMultipart"),
    "email.mime.nonmultipart": _names("MIMENonMultipart"),
    "email.mime.text": _names("MIMEText"),
    "email.mime.message": _names("MIMEMessage"),
    "email.parser": _names(
        "Parser HeaderParser BytesParser BytesHeaderParser FeedParser BytesFeedParser"
    ),
    "email.feedparser": _names("FeedParser BytesFeedParser"),
    "email.policy": _names("Policy Compat32 compat32 EmailPolicy default SMTP SMTPUTF8 HTTP strict"),
    "email.utils": _names(
        """collapse_rfc2231_value decode_params decode_rfc2231 encode_rfc2231
        formataddr formatdate format_datetime getaddresses make_msgid mktime_tz
        parseaddr parsedate parsedate_tz parsedate_to_datetime quote unquote
        localtime"""
    ),
    "email.base64mime": _names("body_decode body_encode decode decodestring header_encode header_length"),
    "email.quoprimime": _names(
        """body_decode body_encode body_length decode decodestring header_decode
        header_encode header_length quote unquote"""
    ),
    # Not: showwarning/formatwarning (they read source lines of any file
    # name through linecache), warn_explicit, catch_warnings (its instances
    # keep the real `warnings` module in `_module`, which a bot subclass made
    # with type() can intercept with a property of that name).
    "warnings": _names("warn simplefilter filterwarnings resetwarnings"),
    "weakref": _names(
        """ref proxy getweakrefcount getweakrefs WeakKeyDictionary
        WeakValueDictionary WeakSet WeakMethod finalize ReferenceType ProxyType
        CallableProxyType ProxyTypes"""
    ),
    # Not: Formatter (attribute lookups in its fields).
    "string": _names(
        """ascii_letters ascii_lowercase ascii_uppercase capwords digits hexdigits
        octdigits printable punctuation whitespace Template"""
    ),
    "decimal": _names(
        """Decimal Context DecimalTuple DefaultContext BasicContext ExtendedContext
        DecimalException Clamped InvalidOperation DivisionByZero Inexact Rounded
        Subnormal Overflow Underflow FloatOperation DivisionImpossible
        InvalidContext ConversionSyntax DivisionUndefined ROUND_DOWN
        ROUND_HALF_UP ROUND_HALF_EVEN ROUND_CEILING ROUND_FLOOR ROUND_UP
        ROUND_HALF_DOWN ROUND_05UP setcontext getcontext localcontext MAX_PREC
        MAX_EMAX MIN_EMIN MIN_ETINY HAVE_THREADS HAVE_CONTEXTVAR"""
    ),
    "fractions": _names("Fraction"),
    "statistics": _names(
        """NormalDist StatisticsError correlation covariance fmean geometric_mean
        harmonic_mean linear_regression mean median median_grouped median_high
        median_low mode multimode pstdev pvariance quantiles stdev variance"""
    ),
    # -- network (only with `network: true`)
    "socket": _names(
        """socket create_connection getaddrinfo gethostbyname gethostbyname_ex
        gethostname getfqdn getdefaulttimeout setdefaulttimeout timeout error
        gaierror herror has_ipv6 inet_aton inet_ntoa inet_pton inet_ntop htons
        ntohs htonl ntohl AddressFamily SocketKind AF_INET AF_INET6 SOCK_STREAM
        IPPROTO_TCP SOL_SOCKET SO_KEEPALIVE SO_RCVBUF SO_SNDBUF TCP_NODELAY
        SHUT_RD SHUT_WR SHUT_RDWR AI_PASSIVE AI_CANONNAME AI_NUMERICHOST"""
    ),
    "ssl": _names(
        """create_default_context SSLContext SSLSocket SSLObject SSLError
        SSLZeroReturnError SSLWantReadError SSLWantWriteError SSLSyscallError
        SSLEOFError SSLCertVerificationError CertificateError CERT_NONE
        CERT_OPTIONAL CERT_REQUIRED PROTOCOL_TLS_CLIENT TLSVersion Purpose
        get_server_certificate DER_cert_to_PEM_cert PEM_cert_to_DER_cert
        OPENSSL_VERSION OPENSSL_VERSION_INFO HAS_SNI get_default_verify_paths
        VerifyMode Options OP_NO_COMPRESSION"""
    ),
    "http": _names("HTTPStatus HTTPMethod client cookies cookiejar"),
    "http.client": _names(
        """HTTPConnection HTTPSConnection HTTPResponse HTTPException NotConnected
        InvalidURL UnknownProtocol UnknownTransferEncoding UnimplementedFileMode
        IncompleteRead ImproperConnectionState CannotSendRequest
        CannotSendHeader ResponseNotReady BadStatusLine LineTooLong
        RemoteDisconnected responses HTTP_PORT HTTPS_PORT"""
    ),
    "http.cookies": _names("SimpleCookie BaseCookie Morsel CookieError"),
    "http.cookiejar": _names("CookieJar DefaultCookiePolicy CookiePolicy Cookie"),
    "urllib": _names("parse request error"),
    "urllib.parse": _names(
        """urlparse urlunparse urljoin urldefrag urlsplit urlunsplit urlencode
        parse_qs parse_qsl quote quote_plus quote_from_bytes unquote
        unquote_plus unquote_to_bytes ParseResult SplitResult DefragResult
        ParseResultBytes SplitResultBytes DefragResultBytes"""
    ),
    # `urlopen` is replaced by a version that accepts http(s) URLs only (the
    # real one also reads file:// and data: URLs).
    "urllib.request": _names("urlopen Request"),
    "urllib.error": _names("URLError HTTPError ContentTooShortError"),
    "urllib3": _names(
        """PoolManager ProxyManager HTTPConnectionPool HTTPSConnectionPool
        HTTPResponse Retry Timeout make_headers encode_multipart_formdata
        disable_warnings connection_from_url exceptions util"""
    ),
    "urllib3.exceptions": _names(
        """HTTPError PoolError RequestError SSLError ProxyError DecodeError
        ProtocolError MaxRetryError HostChangedError TimeoutStateError
        TimeoutError ReadTimeoutError ConnectTimeoutError NewConnectionError
        EmptyPoolError ClosedPoolError LocationValueError LocationParseError
        URLSchemeUnknown ResponseError SecurityWarning InsecureRequestWarning
        InsecurePlatformWarning ResponseNotChunked InvalidHeader
        ProxySchemeUnknown HeaderParsingError IncompleteRead
        InvalidChunkLength"""
    ),
    "urllib3.util": _names("parse_url Url Retry Timeout make_headers"),
    "requests": _names(
        """get post put patch delete head options request Session session
        Request Response PreparedRequest RequestException HTTPError
        ConnectionError ConnectTimeout ReadTimeout Timeout TooManyRedirects
        URLRequired JSONDecodeError codes exceptions auth structures
       """
    ),
    "requests.exceptions": _names(
        """RequestException InvalidJSONError JSONDecodeError HTTPError
        ConnectionError ProxyError SSLError Timeout ConnectTimeout ReadTimeout
        URLRequired TooManyRedirects MissingSchema InvalidSchema InvalidURL
        InvalidHeader ChunkedEncodingError ContentDecodingError
        StreamConsumedError RetryError"""
    ),
    "requests.auth": _names("AuthBase HTTPBasicAuth HTTPDigestAuth HTTPProxyAuth"),
    "requests.structures": _names("CaseInsensitiveDict LookupDict"),
    "certifi": _names("where contents"),
    "charset_normalizer": _names(
        "from_bytes detect CharsetMatch CharsetMatches is_binary"
    ),
    "idna": _names(
        """encode decode alabel ulabel IDNAError IDNABidiError InvalidCodepoint
        InvalidCodepointContext"""
    ),
}


def format_refused(fmt):
    """Why the `str.format` template `fmt` is refused, or None.

    `'{0.__class__}'.format(x)` reads attributes by name at run time, out of
    sight of the `ast` check. Every field (and every field nested in a format
    spec) is parsed with CPython's own parser, and attribute names go through
    the same rule as attributes written in code.
    """
    import _string

    pending = [fmt]
    while pending:
        text = pending.pop()
        # A malformed template raises ValueError here, as str.format would.
        parts = list(_string.formatter_parser(text))
        for _literal, field, spec, _conv in parts:
            if field is None:
                continue
            if spec:
                pending.append(spec)
            _first, rest = _string.formatter_field_name_split(field)
            for is_attr, key in rest:
                if is_attr:
                    why = attr_refused(key)
                    if why:
                        return f"format field '{{{field}}}': {why}"
    return None
