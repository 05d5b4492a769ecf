title = Ihre Bestellung wurde versandt
body = { $count ->
    [one] Ein Artikel ist unterwegs, { $name }.
   *[other] { $count } Artikel sind unterwegs, { $name }.
}
