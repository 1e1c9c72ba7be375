//! Writes what `#[task]` adds beside the function: hidden type aliases for its argument and
//! result types (resolved where the user wrote them), and a module of the same name with
//! `enqueue`, `enqueue_many`, `with`, `job`, `NAME`, `INFO`, the handler and its registration.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::ItemFn;
use syn::spanned::Spanned;

use crate::ast::Task;
use crate::attr::TaskArgs;

/// Expands `#[task(args)] item`. On error, the function is still emitted as written, beside an
/// empty module, so the only errors shown are the ones about the task.
pub(crate) fn task(args: TokenStream, item: TokenStream) -> TokenStream {
    let item: ItemFn = match syn::parse2(item.clone()) {
        Ok(item) => item,
        Err(_) => {
            let error = syn::Error::new(
                Span::call_site(),
                "`#[task]` goes on an `async fn` at module level",
            );
            let error = error.to_compile_error();
            return quote! { #error #item };
        }
    };
    let args = TaskArgs::parse(args);
    let task = Task::from_syn(&item);
    match (args, task) {
        (Ok(args), Ok(task)) => match check_schedule(&args, &task) {
            Ok(()) => generate(&args, &task),
            Err(error) => with_error(item, error),
        },
        (args, task) => {
            let mut errors = args.err().into_iter().chain(task.err());
            let mut error = errors
                .next()
                .unwrap_or_else(|| syn::Error::new(Span::call_site(), "invalid `#[task]`"));
            for more in errors {
                error.combine(more);
            }
            with_error(item, error)
        }
    }
}

/// The fn as written (without another `#[task]` on it, which would expand again) beside an
/// empty module of its name, and `error`: so that the only errors shown are the task's.
fn with_error(mut item: ItemFn, error: syn::Error) -> TokenStream {
    let error = error.to_compile_error();
    item.attrs
        .retain(|attr| !crate::ast::is_task_attribute(attr));
    if item.sig.receiver().is_some() {
        // A method: it sits in an `impl`, where a module is not allowed.
        return quote! { #item #error };
    }
    let vis = &item.vis;
    let ident = &item.sig.ident;
    quote! {
        #item
        #[allow(dead_code)]
        #vis mod #ident {}
        #error
    }
}

/// A task scheduled with `cron` takes no job arguments: each tick would not know what to pass.
fn check_schedule(args: &TaskArgs, task: &Task<'_>) -> syn::Result<()> {
    match &args.cron {
        Some(cron) if task.args.iter().any(|arg| !arg.injected) => Err(syn::Error::new(
            cron.span(),
            "`cron` schedules a task that takes no arguments; schedule a task with arguments in code, with its arguments: `.periodic(dtask::periodic(\"name\", \"0 0 7 * * *\", my_task::call(args..)))` on the worker",
        )),
        _ => Ok(()),
    }
}

fn generate(args: &TaskArgs, task: &Task<'_>) -> TokenStream {
    let item = task.item;
    let vis = &item.vis;
    let ident = &item.sig.ident;
    let krate = args
        .crate_path
        .clone()
        .unwrap_or_else(|| syn::parse_quote!(::dtask));
    let private = quote!(#krate::__private);

    let name = match &args.name {
        Some(name) => quote!(#name),
        None => quote!(::core::module_path!()),
    };
    let queue = args
        .queue
        .as_ref()
        .map_or_else(|| quote!("default"), |queue| quote!(#queue));
    let retries = args.retries.unwrap_or(3);
    let result_ttl = match args.result_ttl_ms {
        Some(ms) => quote!(::core::option::Option::Some(::core::time::Duration::from_millis(#ms))),
        None => quote!(::core::option::Option::None),
    };
    let some_str = |text: &Option<syn::LitStr>| match text {
        Some(text) => quote!(::core::option::Option::Some(#text)),
        None => quote!(::core::option::Option::None),
    };
    let cron = some_str(&args.cron);
    let unique_for = match args.unique_for_ms {
        Some(ms) => quote!(::core::option::Option::Some(::core::time::Duration::from_millis(#ms))),
        None => quote!(::core::option::Option::None),
    };
    let tz = some_str(&args.tz);
    // A malformed rate fails the constant that reads it, at the user's literal.
    let rate = match &args.rate {
        Some(rate) => quote_spanned! {rate.span()=>
            ::core::option::Option::Some(#krate::__private::task_rate(#rate))
        },
        None => quote!(::core::option::Option::None),
    };
    let version = args.version.unwrap_or(1);
    // A job of an older version: converted by the task's migration when it has one, else
    // read as the parameters are now.
    let decode = match &args.migrate {
        Some(path) => {
            let migrate_span = path.span();
            // Named from where the task is: a relative path is one level up from the module
            // the expansion makes.
            let absolute = path.leading_colon.is_some()
                || path.segments.first().is_some_and(|s| s.ident == "crate");
            let path = if absolute {
                quote!(#path)
            } else {
                let rest = path.segments.iter().skip_while(|s| s.ident == "self");
                quote!(super::#(#rest)::*)
            };
            // Spanned at the fn's name in the attribute: a migration of the wrong shape is
            // reported there.
            quote_spanned!(migrate_span=> #private::decode_migrated::<Task, _, _>(args, version, #path))
        }
        None => quote!(#private::decode_args::<Task>(args, version)),
    };
    let max_running = match args.max_running {
        Some(n) => quote!(::core::option::Option::Some(#n)),
        None => quote!(::core::option::Option::None),
    };
    let timeout = match args.timeout_ms {
        Some(ms) => quote!(::core::option::Option::Some(::core::time::Duration::from_millis(#ms))),
        None => quote!(::core::option::Option::None),
    };

    // Aliases beside the fn name its types where the user wrote them; the module reaches them
    // through `super::`, so paths like `super::Thing` or `self::Thing` keep their meaning.
    let arg_alias: Vec<_> = task
        .args
        .iter()
        .enumerate()
        .map(|(i, arg)| format_ident!("__dtask_{}_arg{}", ident, i, span = arg.ty.span()))
        .collect();
    // Named for the mistake it catches: inside a fn body, `super::` cannot see it.
    let module_level = format_ident!(
        "__dtask_task_must_be_declared_at_module_level_{}",
        ident,
        span = ident.span()
    );
    let output_alias = format_ident!("__dtask_{}_output", ident);
    let arg_types: Vec<_> = task.args.iter().map(|arg| &arg.ty).collect();
    let output_type = match &task.returns {
        None => quote!(()),
        Some(ty) => quote!(#ty),
    };
    // The job's arguments (what `enqueue` takes and the job carries) and the injected ones
    // (`State<..>`, filled by the worker), each with its alias and its handler local.
    let job_args: Vec<usize> = (0..task.args.len())
        .filter(|&i| !task.args[i].injected)
        .collect();
    let injected: Vec<usize> = (0..task.args.len())
        .filter(|&i| task.args[i].injected)
        .collect();
    let arg_names: Vec<_> = job_args.iter().map(|&i| &task.args[i].name).collect();
    let job_alias: Vec<_> = job_args.iter().map(|&i| &arg_alias[i]).collect();
    let state_alias: Vec<_> = injected.iter().map(|&i| &arg_alias[i]).collect();

    let arg_checks = job_args.iter().map(|&i| {
        let alias = &arg_alias[i];
        quote_spanned! {task.args[i].ty.span()=>
            #private::assert_arg::<super::#alias>();
        }
    });
    let output_span = match &item.sig.output {
        syn::ReturnType::Default => item.sig.ident.span(),
        syn::ReturnType::Type(_, ty) => ty.span(),
    };
    let output_check = quote_spanned! {output_span=>
        #private::assert_output::<super::#output_alias>();
    };
    let output_value = quote_spanned! {output_span=>
        <super::#output_alias as #krate::TaskOutput>::Value
    };

    // One argument travels as `(a,)`, several as `(a, b)`; `enqueue_many` takes `T` for one
    // argument and `(A, B)` for several.
    let wrap_input = job_alias.len() == 1;
    let (item_type, item_to_args) = if job_alias.len() == 1 {
        let alias = job_alias[0];
        (quote!(super::#alias), quote!(|item| (item,)))
    } else {
        (quote!((#(super::#job_alias,)*)), quote!(|item| item))
    };

    // The handler's locals: names no parameter and no user item can take.
    let locals: Vec<_> = (0..task.args.len())
        .map(|i| format_ident!("__dtask_local{}", i))
        .collect();
    let job_locals: Vec<_> = job_args.iter().map(|&i| &locals[i]).collect();
    // `Task` names the parameters' types in a trait impl, so it may be no more visible than
    // they are: public for a public task, else as visible as the task's own fn.
    let task_vis = match &item.vis {
        syn::Visibility::Public(_) => quote!(pub),
        syn::Visibility::Restricted(restricted) if restricted.path.is_ident("crate") => {
            quote!(pub(crate))
        }
        _ => quote!(pub(super)),
    };
    // The parameters' names, for errors about a job's arguments.
    let param_names: Vec<String> = job_args
        .iter()
        .map(|&i| task.args[i].name.to_string())
        .collect();
    let injections = injected.iter().map(|&i| {
        let (local, alias) = (&locals[i], &arg_alias[i]);
        quote_spanned! {task.args[i].ty.span()=>
            let #local = #private::inject::<super::#alias>(states)?;
        }
    });
    let call = quote_spanned! {item.sig.ident.span()=>
        #private::assert_send(super::#ident(#(#locals),*))
    };
    // A `Result` (under any name) fails the attempt with its error; anything else is the
    // result. The compiler decides, through `TaskOutput`.
    let finish = quote_spanned! {output_span=>
        #private::finish::<super::#output_alias>(#call.await)
    };

    let fn_doc = format!(" Enqueue and follow jobs of the task [`{ident}`](fn@super::{ident}).");
    let enqueue_doc = format!(
        " Enqueues a job of `{ident}` with these arguments, through the default client, and returns its handle."
    );

    quote! {
        #item

        #(
            #[doc(hidden)]
            #[allow(non_camel_case_types)]
            type #arg_alias = #arg_types;
        )*
        #[doc(hidden)]
        #[allow(non_camel_case_types)]
        type #output_alias = #output_type;
        #[doc(hidden)]
        #[allow(non_upper_case_globals)]
        const #module_level: () = ();

        #[doc = #fn_doc]
        #vis mod #ident {
            const _: () = super::#module_level;
            const _: () = {
                #(#arg_checks)*
                #output_check
            };

            /// The name jobs of this task carry.
            pub const NAME: &str = #name;

            /// The task's name and default settings.
            pub static INFO: #krate::TaskInfo = #krate::TaskInfo {
                name: NAME,
                queue: #queue,
                retries: #retries,
                timeout: #timeout,
                result_ttl: #result_ttl,
                cron: #cron,
                tz: #tz,
                unique_for: #unique_for,
                rate: #rate,
                max_running: #max_running,
                version: #version,
            };

            /// What the task returns on success, and what waiting on a job yields.
            pub type Output = #output_value;

            /// This task as a type, for code generic over tasks (`dtask::TaskDef`).
            #task_vis enum Task {}

            impl #krate::TaskDef for Task {
                type Args = (#(super::#job_alias,)*);
                type Output = Output;
                const INFO: &'static #krate::TaskInfo = &INFO;
                const PARAMS: &'static [&'static str] = &[#(#param_names),*];

                fn decode_job(
                    args: &str,
                    version: u32,
                ) -> ::core::result::Result<Self::Args, #private::HandlerError> {
                    #decode
                }
            }

            #[doc = #enqueue_doc]
            pub async fn enqueue(#(#arg_names: super::#job_alias),*)
                -> ::core::result::Result<#krate::JobHandle<Output>, #krate::Error>
            {
                self::with().enqueue(#(#arg_names),*).await
            }

            /// Enqueues one job per item, in one round trip. An item is the task's argument, or
            /// a tuple of its arguments when it has several.
            pub async fn enqueue_many(
                items: impl ::core::iter::IntoIterator<Item = #item_type>,
            ) -> ::core::result::Result<::std::vec::Vec<#krate::JobHandle<Output>>, #krate::Error>
            {
                self::with().enqueue_many(items).await
            }

            /// A job of this task with these arguments, not enqueued yet: to enqueue later
            /// (`.enqueue()`), or to schedule with `dtask::periodic`.
            pub fn call(#(#arg_names: super::#job_alias),*) -> #krate::Call<Output> {
                #krate::Enqueue::new(&INFO).call_args((#(#arg_names,)*))
            }

            /// This task as a step of a workflow, taking its input from the step before (its
            /// argument, or the tuple of its arguments): `dtask::chain(..).then(with_input())`.
            pub fn with_input() -> #krate::Then<#item_type, Output> {
                self::with().with_input()
            }

            /// Options for the next enqueue: `.delay(..)`, `.at(..)`, `.queue(..)`,
            /// `.retries(..)`, `.client(..)`, then `.enqueue(..)` (or `.call(..)`).
            pub fn with() -> Builder {
                Builder(#krate::Enqueue::new(&INFO))
            }

            /// A handle on the job `id` of this task, to read its status or wait for its result,
            /// from any process.
            pub fn job(id: impl ::core::convert::Into<#krate::JobId>) -> #krate::JobHandle<Output> {
                #krate::JobHandle::new(::core::convert::Into::into(id), ::core::option::Option::None).of_task(&INFO)
            }

            /// Options for enqueueing jobs of this task; see [`with`].
            #[must_use = "a builder does nothing until `.enqueue(..)` is awaited"]
            pub struct Builder(#krate::Enqueue<Output>);

            impl Builder {
                /// Runs the job no sooner than `delay` from now.
                pub fn delay(self, delay: ::core::time::Duration) -> Self {
                    Builder(self.0.delay(delay))
                }

                /// Runs the job no sooner than `when`.
                pub fn at(self, when: impl ::core::convert::Into<::std::time::SystemTime>) -> Self {
                    Builder(self.0.at(when))
                }

                /// Sends the job to `queue` instead of the task's own.
                pub fn queue(self, queue: impl ::core::convert::Into<::std::string::String>) -> Self {
                    Builder(self.0.queue(queue))
                }

                /// Retries the job at most `retries` times instead of the task's default.
                pub fn retries(self, retries: u32) -> Self {
                    Builder(self.0.retries(retries))
                }

                /// Enqueues through `client` instead of the default client.
                pub fn client(self, client: &#krate::Client) -> Self {
                    Builder(self.0.client(client))
                }

                /// Limits each attempt of the job to `limit` instead of the task's timeout.
                pub fn timeout(self, limit: ::core::time::Duration) -> Self {
                    Builder(self.0.timeout(limit))
                }

                /// Names the job: while a job of that id exists, enqueueing it again returns
                /// that job's handle (see `dtask::Enqueue::id`).
                pub fn id(self, id: impl ::core::convert::Into<#krate::JobId>) -> Self {
                    Builder(self.0.id(id))
                }

                /// At most one job with these arguments for `window` (see
                /// `dtask::Enqueue::unique_for`).
                pub fn unique_for(self, window: ::core::time::Duration) -> Self {
                    Builder(self.0.unique_for(window))
                }

                /// Until when a unique job keeps duplicates out: its end or its start.
                pub fn unique_until(self, until: #krate::UniqueUntil) -> Self {
                    Builder(self.0.unique_until(until))
                }

                /// Enqueues the job with these arguments and returns its handle.
                pub async fn enqueue(self, #(#arg_names: super::#job_alias),*)
                    -> ::core::result::Result<#krate::JobHandle<Output>, #krate::Error>
                {
                    self.0.call_args((#(#arg_names,)*)).enqueue().await
                }

                /// This task with these options as a step of a workflow, taking its input
                /// from the step before.
                pub fn with_input(self) -> #krate::Then<#item_type, Output> {
                    #krate::Then::new(self.0, #wrap_input)
                }

                /// The job with these arguments and options, not enqueued yet.
                pub fn call(self, #(#arg_names: super::#job_alias),*) -> #krate::Call<Output> {
                    self.0.call_args((#(#arg_names,)*))
                }

                /// Enqueues one job per item, with these options, in one round trip.
                pub async fn enqueue_many(
                    self,
                    items: impl ::core::iter::IntoIterator<Item = #item_type>,
                ) -> ::core::result::Result<::std::vec::Vec<#krate::JobHandle<Output>>, #krate::Error>
                {
                    self.0.enqueue_many_args(::core::iter::Iterator::map(
                        ::core::iter::IntoIterator::into_iter(items),
                        #item_to_args,
                    )).await
                }
            }

            #[doc(hidden)]
            #[allow(deprecated)]
            fn __dtask_handler(args: &str, version: u32, states: &#private::States) -> ::core::result::Result<#private::HandlerFuture, #private::HandlerError> {
                let (#(#job_locals,)*): (#(super::#job_alias,)*) =
                    <Task as #krate::TaskDef>::decode_job(args, version)?;
                #(#injections)*
                ::core::result::Result::Ok(::std::boxed::Box::pin(async move { #finish }))
            }

            #private::inventory::submit! {
                #private::TaskEntry {
                    info: &INFO,
                    handler: __dtask_handler,
                    states: &[#(#private::StateNeed::of::<super::#state_alias>()),*],
                    location: ::core::concat!(::core::file!(), ":", ::core::line!()),
                }
            }
        }
    }
}
