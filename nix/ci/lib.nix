# A minimal stand-in for nixpkgs' `lib`, for the offline checks only.
#
# No machine that runs the project's tests reaches nixpkgs, so nix/module.nix
# is evaluated against this file instead: it implements, with builtins only,
# exactly the functions the module uses, with nixpkgs' names and meaning
# (simplified where the module does not care, e.g. option priorities). It
# also carries a tiny module evaluator (`evalModule`) that fills options with
# defaults, applies mkIf/mkMerge/mkDefault, type-checks and runs assertions,
# and `renderUnit`, which writes a unit file the way NixOS's systemd-lib does.
#
# If the module starts using another lib function, evaluation fails with
# "attribute missing": add it here, with nixpkgs' semantics.
let
  inherit (builtins)
    all
    attrNames
    concatLists
    concatStringsSep
    filter
    foldl'
    head
    isAttrs
    isBool
    isFunction
    isInt
    isList
    isString
    length
    listToAttrs
    mapAttrs
    stringLength
    substring
    ;

  lib = rec {
    inherit concatStringsSep;

    # --- strings and lists -------------------------------------------------
    hasPrefix = pref: str: substring 0 (stringLength pref) str == pref;
    optional = cond: x: if cond then [ x ] else [ ];
    optionals = cond: xs: if cond then xs else [ ];
    optionalAttrs = cond: as: if cond then as else { };
    last = xs: builtins.elemAt xs (length xs - 1);
    splitString =
      sep: s: filter isString (builtins.split (escapeRegex sep) s);
    escapeRegex = s: builtins.replaceStrings [ "." "[" "]" "(" ")" "*" "+" "?" "^" "$" "|" "\\" ] [ "\\." "\\[" "\\]" "\\(" "\\)" "\\*" "\\+" "\\?" "\\^" "\\$" "\\|" "\\\\" ] s;
    toInt =
      s:
      let
        m = builtins.match "[0-9]+" s;
      in
      if m == null then throw "toInt: '${s}' is not a decimal integer" else builtins.fromJSON s;
    escapeShellArg =
      arg:
      if builtins.match "[[:alnum:],._+:@%/=-]+" arg != null then
        arg
      else
        "'${builtins.replaceStrings [ "'" ] [ "'\\''" ] arg}'";
    escapeShellArgs = args: concatStringsSep " " (map escapeShellArg args);
    getExe = pkg: "${pkg}/bin/${pkg.meta.mainProgram}";

    # --- attribute sets ----------------------------------------------------
    recursiveUpdate =
      lhs: rhs:
      lhs
      // mapAttrs (
        n: v: if isAttrs v && lhs ? ${n} && isAttrs lhs.${n} && !(isDerivation v) then recursiveUpdate lhs.${n} v else v
      ) rhs;
    importTOML = path: builtins.fromTOML (builtins.readFile path);
    fileset = {
      unions = paths: paths;
      toSource = { root, fileset }: builtins.seq fileset root;
    };
    licenses.asl20 = {
      spdxId = "Apache-2.0";
    };
    platforms.linux = [
      "x86_64-linux"
      "aarch64-linux"
    ];
    isDerivation = v: isAttrs v && (v.type or null) == "derivation";
    literalExpression = text: {
      _type = "literalExpression";
      inherit text;
    };

    # --- options and types -------------------------------------------------
    mkOption =
      attrs:
      attrs
      // {
        _type = "option";
      };
    mkEnableOption = name: mkOption {
      type = types.bool;
      default = false;
      description = "Whether to enable ${name}.";
    };
    mkIf = condition: content: {
      _type = "if";
      inherit condition content;
    };
    mkMerge = contents: {
      _type = "merge";
      inherit contents;
    };
    mkDefault = content: {
      _type = "override";
      priority = 1000;
      inherit content;
    };

    types = rec {
      mkType = name: check: { inherit name check; };
      str = mkType "str" isString;
      bool = mkType "bool" isBool;
      int = mkType "int" isInt;
      port = mkType "port" (v: isInt v && v >= 0 && v <= 65535);
      path = mkType "path" (v: isString v || builtins.isPath v);
      package = mkType "package" isDerivation;
      anything = mkType "anything" (_: true);
      nullOr = t: mkType "null or ${t.name}" (v: v == null || t.check v);
      listOf = t: mkType "list of ${t.name}" (v: isList v && all t.check v);
      attrsOf = t: mkType "attribute set of ${t.name}" (v: isAttrs v && all (n: t.check v.${n}) (attrNames v));
      functionTo = t: mkType "function that evaluates to ${t.name}" isFunction;
      enum = vals: mkType "one of ${concatStringsSep ", " (map builtins.toJSON vals)}" (v: builtins.elem v vals);
      strMatching = re: mkType "string matching ${re}" (v: isString v && builtins.match re v != null);
    };

    # --- the module evaluator stand-in -------------------------------------
    isOption = v: isAttrs v && (v._type or null) == "option";

    # Fill an option tree with user values (type-checked) or defaults;
    # unknown user attributes are errors, as in the module system.
    fillOptions =
      prefix: opts: user:
      let
        unknown = filter (n: !(opts ? ${n})) (attrNames user);
      in
      if unknown != [ ] then
        throw "The option `${prefix}${head unknown}' does not exist."
      else
        mapAttrs (
          n: o:
          if isOption o then
            (
              if user ? ${n} then
                (if o.type.check user.${n} then user.${n} else throw "The option `${prefix}${n}' is not of type ${o.type.name}.")
              else if o ? default then
                o.default
              else
                throw "The option `${prefix}${n}' is used but not defined."
            )
          else
            fillOptions "${prefix}${n}." o (user.${n} or { })
        ) opts;

    # Resolve mkIf / mkMerge / mkDefault in a definition tree. Lists from
    # several mkMerge branches concatenate, attribute sets merge recursively.
    resolve =
      v:
      if isAttrs v && (v._type or null) == "if" then
        (if v.condition then resolve v.content else { _type = "absent"; })
      else if isAttrs v && (v._type or null) == "merge" then
        foldl' mergeDefs { } (filter (x: !(isAttrs x && (x._type or null) == "absent")) (map resolve v.contents))
      else if isAttrs v && (v._type or null) == "override" then
        resolve v.content
      else if isAttrs v && !(isDerivation v) && !(v ? _type) then
        let
          resolved = mapAttrs (_: resolve) v;
        in
        listToAttrs (
          map (n: {
            name = n;
            value = resolved.${n};
          }) (filter (n: !(isAttrs resolved.${n} && (resolved.${n}._type or null) == "absent")) (attrNames resolved))
        )
      else
        v;

    mergeDefs =
      a: b:
      a
      // mapAttrs (
        n: v:
        if a ? ${n} && isList v && isList a.${n} then
          a.${n} ++ v
        else if a ? ${n} && isAttrs v && isAttrs a.${n} && !(isDerivation v) then
          mergeDefs a.${n} v
        else if a ? ${n} && a.${n} != v then
          throw "conflicting definitions for `${n}'"
        else
          v
      ) b;

    # Evaluate one NixOS module against `userConfig` (its own options only).
    # Returns the filled `config` and the module's resolved `output`; throws
    # like NixOS when an assertion fails.
    evalModule =
      {
        module,
        pkgs,
        userConfig,
      }:
      let
        result = module {
          inherit pkgs config;
          lib = lib;
        };
        config = fillOptions "" result.options userConfig;
        output = resolve result.config;
        failed = filter (a: !a.assertion) (output.assertions or [ ]);
      in
      if failed != [ ] then
        throw "Failed assertions:\n- ${concatStringsSep "\n- " (map (a: a.message) failed)}"
      else
        {
          inherit config output;
        };

    # --- unit rendering, after nixos/lib/systemd-lib.nix -------------------
    # Lists become one line per element; booleans true/false.
    toOption =
      x:
      if x == true then
        "true"
      else if x == false then
        "false"
      else
        toString x;
    attrsToSection =
      as:
      concatStringsSep "" (
        concatLists (
          map (name: map (x: "${name}=${toOption x}\n") (if isList as.${name} then as.${name} else [ as.${name} ])) (
            attrNames as
          )
        )
      );
    renderUnit =
      svc:
      let
        unitSection =
          optionalAttrs (svc ? description) { Description = svc.description; }
          // optionalAttrs (svc ? documentation) { Documentation = svc.documentation; }
          // optionalAttrs ((svc.after or [ ]) != [ ]) { After = svc.after; }
          // optionalAttrs ((svc.wants or [ ]) != [ ]) { Wants = svc.wants; }
          // optionalAttrs ((svc.requires or [ ]) != [ ]) { Requires = svc.requires; };
        env = svc.environment or { };
        environment = map (n: "\"${n}=${env.${n}}\"") (attrNames env);
      in
      "[Unit]\n"
      + attrsToSection unitSection
      + "\n[Service]\n"
      + attrsToSection (svc.serviceConfig // optionalAttrs (environment != [ ]) { Environment = environment; });
  };
in
lib
